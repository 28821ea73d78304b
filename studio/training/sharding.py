"""distributed.strategy fsdp: the decoder layers sharded over the ranks with PyTorch's FSDP2 (`fully_shard`).

Each rank keeps 1/N of every decoder layer's weights (frozen base and LoRA alike) and gathers a layer's
whole weights only while that layer computes; the LoRA gradients are reduce-scattered, summed, so each
rank's optimizer steps its own slice of the adapter. The embeddings and the output layer stay whole on
every rank: they are frozen, and the fused label loss reads the output layer's weight directly, outside
any module call where FSDP could gather it. A vision-language model's vision tower and projector stay
whole too: a rank may encode no pictures in a forward pass while another encodes several, so a sharded
vision block would wait for a gather the other rank never makes. Their trainable weights (the vision
blocks' LoRA, a projector trained whole) have their gradients summed whole over the ranks, as DDP's are.

Reading or writing whole weights (checkpoints, the adapter, the best evaluated weights) is collective:
every rank calls the same functions in the same order, and the whole tensors come back on every rank.
A 4-bit base is refused before the run starts (see studio/control/devices.py): bitsandbytes' packed 4-bit
parameters lose their quantisation state when FSDP2 re-wraps them.
"""

from __future__ import annotations

from typing import Any, TypeGuard

import torch
from torch.distributed.tensor import DTensor, distribute_tensor


def shard_model(model: Any) -> int:
    """Shard every decoder layer, then the rest of the decoder (its final norm); returns the layers sharded."""
    from torch.distributed.fsdp import fully_shard

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder()
    whole = {base.get_input_embeddings().weight, base.get_output_embeddings().weight}
    units = [*decoder.layers, decoder]
    for unit in units:
        fully_shard(unit, ignored_params=whole)
        unit.set_gradient_divide_factor(1.0)  # each rank's loss is already its share of the step's mean: sum
        unit.set_force_sum_reduction_for_comms(True)  # gloo has no pre-scaled sum
    return len(decoder.layers)


def is_sharded(parameter: torch.Tensor) -> TypeGuard[DTensor]:
    return isinstance(parameter, DTensor)


def _trainable(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def whole_trainable(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every trainable weight whole, on the CPU, by its name in the model (collective)."""
    return {name: _whole(p.detach()).cpu() for name, p in _trainable(model).items()}


def load_trainable(model: torch.nn.Module, saved: dict[str, torch.Tensor]) -> None:
    """Set trainable weights from whole tensors keyed as peft saves them (adapter files, best weights):
    each rank keeps its own slice."""
    by_saved_key = _saved_keys(model)
    unknown = sorted(set(saved) - set(by_saved_key))
    if unknown:
        raise KeyError(f"weights not in this model: {', '.join(unknown[:3])}")
    with torch.no_grad():
        for key, value in saved.items():
            _set(by_saved_key[key], value)


def _saved_keys(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """The saved key of each trainable parameter (peft's, for an adapter), found by naming tensors that stand for
    them."""
    from studio.training.weights import trained_state

    parameters = _trainable(model)
    markers = {name: torch.tensor(index) for index, name in enumerate(parameters)}
    named = trained_state(model, markers)
    order = list(parameters.values())
    return {key: order[int(marker)] for key, marker in named.items()}


def gather_optimizer(optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer's state dict with every sharded tensor whole (collective)."""
    saved = optimizer.state_dict()
    state = {index: {name: _whole(v) for name, v in values.items()} for index, values in saved["state"].items()}
    return {"state": state, "param_groups": saved["param_groups"]}


def scatter_optimizer(optimizer: torch.optim.Optimizer, saved: dict) -> None:
    """Load a whole optimizer state dict: tensors shaped like their parameter become that parameter's slice."""
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    state = {}
    for index, values in saved["state"].items():
        parameter = parameters[int(index)]
        state[index] = {name: _slice_like(parameter, value) for name, value in values.items()}
    optimizer.load_state_dict({"state": state, "param_groups": saved["param_groups"]})


def clip_gradients(parameters: list[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """clip_grad_norm_ over sharded and whole gradients together (torch's own takes one kind at a time)."""
    import torch.distributed as dist

    sharded = [p.grad.to_local() for p in parameters if p.grad is not None and is_sharded(p.grad)]
    whole = [p.grad for p in parameters if p.grad is not None and not is_sharded(p.grad)]
    squares = torch.zeros((), dtype=torch.float64, device=(sharded or whole)[0].device)
    for grad in sharded:
        squares += grad.double().pow(2).sum()
    dist.all_reduce(squares)  # the slices add up to the whole; the whole gradients are the same on every rank
    for grad in whole:
        squares += grad.double().pow(2).sum()
    norm = squares.sqrt().float()
    scale = min(1.0, max_norm / (norm.item() + 1e-6))  # a number, which sharded and whole gradients both take
    for parameter in parameters:
        if parameter.grad is not None:
            parameter.grad.mul_(scale)
    return norm


def _whole(value: Any) -> Any:
    return value.full_tensor() if isinstance(value, DTensor) else value


def _slice_like(parameter: torch.Tensor, value: Any) -> Any:
    if not (is_sharded(parameter) and isinstance(value, torch.Tensor) and value.shape == parameter.shape):
        return value  # the step count, or state of a parameter that is not sharded
    # every rank holds the whole value: each takes its own slice, nothing is sent
    return distribute_tensor(value.to(parameter.dtype), parameter.device_mesh, parameter.placements, src_data_rank=None)


def _set(parameter: torch.nn.Parameter, value: torch.Tensor) -> None:
    if is_sharded(parameter):
        parameter.copy_(_slice_like(parameter, value.to(parameter.device)))
    else:
        parameter.copy_(value.to(parameter.device, parameter.dtype))
