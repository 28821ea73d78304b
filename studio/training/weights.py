"""The weights a run trains, whatever the method: a peft adapter (lora, oft) or chosen weights of the model itself
(full, freeze). Checkpoints, best weights, sharding and the reference pass go through these, not through peft."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, cast

import torch

# a whole-model run's trained weights in a checkpoint, keyed by their names in the model (tied weights once)
TRAINED_FILE = "adapter_model.safetensors"


def is_adapter(model: torch.nn.Module) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def trained_state(model: torch.nn.Module, whole: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The trained weights as they are saved: peft's keys for an adapter, the model's own names otherwise.
    `whole`: a sharded model's trainable weights gathered, by their names in the model."""
    if is_adapter(model):
        from peft import get_peft_model_state_dict

        return get_peft_model_state_dict(cast(Any, model), state_dict=whole)
    return {name: (whole or {}).get(name, p) for name, p in model.named_parameters() if p.requires_grad}


def load_trained_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    if is_adapter(model):
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, state)
        return
    parameters = dict(model.named_parameters())
    unknown = sorted(set(state) - set(parameters))
    if unknown:
        raise KeyError(f"weights not in this model: {', '.join(unknown[:3])}")
    with torch.no_grad():
        for name, value in state.items():
            parameters[name].copy_(value)


def adapter_off(model: torch.nn.Module) -> contextlib.AbstractContextManager:
    """The model without its adapter; a model trained itself has none to turn off, so it is the model as it is."""
    return cast(Any, model).disable_adapter() if is_adapter(model) else contextlib.nullcontext()


def save_trained(
    model: torch.nn.Module,
    folder: Path,
    whole: dict[str, torch.Tensor] | None = None,
    initial: Path | None = None,
) -> None:
    """A checkpoint's copy of the trained weights: peft's adapter files, or the trained tensors alone. `initial`: a
    PiSSA/OLoRA adapter's start, against which peft converts the adapter into a plain LoRA of the original base."""
    if is_adapter(model):
        # peft reads a None state_dict as none given
        cast(Any, model).save_pretrained(
            str(folder), state_dict=whole or None, path_initial_model_for_weight_conversion=initial
        )
        return
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {name: value.detach().to("cpu").contiguous() for name, value in trained_state(model, whole).items()}
    save_file(tensors, folder / TRAINED_FILE)


def save_whole_model(model: torch.nn.Module, folder: Path, dtype: torch.dtype) -> None:
    """A full or freeze run's result: the whole model in `dtype` (its trained weights were fp32 master copies),
    as a transformers model folder that any tool loads."""
    model.to(dtype)
    cast(Any, model).save_pretrained(str(folder))
