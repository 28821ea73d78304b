"""The optimizer and the learning-rate schedule of a run, from the optimizer and training config sections.

    adamw       torch's AdamW (fused, on CUDA and on a CPU)
    adamw_8bit  bitsandbytes' AdamW8bit: 8-bit moments in blocks with their own scales (its CPU backend too)
    adafactor   transformers' Adafactor, driven by this learning rate and schedule (as the Trainer's "adafactor")
    galore      galore_torch's AdamW: groups of target weights carry GaLore's rank options, the rest plain AdamW
    apollo      apollo_torch's AdamW: the same with APOLLO's options
    badam       badam's BlockOptimizer around AdamW (blocks.py)

The optimizer steps whatever weights have requires_grad (an adapter, or the model's own weights); LoRA+ puts the
B matrices in groups of their own at `lora.loraplus_lr_ratio` times the learning rate. Every optimizer's state goes
into a checkpoint as tensors and JSON (checkpoint.py; projectors.py for GaLore and APOLLO, blocks.py for BAdam).
The schedule is transformers' `get_scheduler` with the training section's options; reduce_lr_on_plateau and greedy
are stepped by evaluations (`step_on_metric`), every other schedule by optimizer steps.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import torch

from studio.config import LoraConfig, TrainingConfig
from studio.config.optimizer import PACKAGES, OptimizerConfig
from studio.config.training import METRIC_SCHEDULERS
from studio.errors import StudioError
from studio.modeling.vision_parts import inside, parts_of, projection_skips

if TYPE_CHECKING:
    from torch.optim.lr_scheduler import LRScheduler

Named = list[tuple[str, torch.nn.Parameter]]


def build_optimizer(
    model: torch.nn.Module,
    training: TrainingConfig,
    config: OptimizerConfig,
    lora: LoraConfig,
    *,
    sharded: bool = False,
) -> torch.optim.Optimizer:
    """`sharded`: the weights are FSDP shards, which only AdamW steps as it would whole weights (the others
    factor, project or pick whole matrices and layers)."""
    if sharded and config.name != "adamw":
        raise StudioError("training.optimizer_not_sharded", name=config.name)
    groups = _groups(model, training, lora)
    if config.name in ("galore", "apollo"):
        return _projecting(model, groups, training, config)
    if config.name == "badam":
        return _badam(model, groups, training, config)
    parameters = [{"params": [p for _, p in named], "lr": lr} for named, lr in groups]
    if config.name == "adamw_8bit":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(parameters, **_adam(training, config))
    if config.name == "adafactor":
        from transformers.optimization import Adafactor

        # an external learning rate, as the Trainer's optim "adafactor": no relative step, no parameter scale
        lr, decay = training.learning_rate, training.weight_decay
        return Adafactor(parameters, lr=lr, weight_decay=decay, scale_parameter=False, relative_step=False)
    device = next(p for named, _ in groups for _, p in named).device.type
    # fused on a CPU too: one pass per weight instead of a dozen, 0.36 -> 0.08 s per step on 135M fp32 weights (full
    # fine-tuning, a quiet 2-core CPU; docs/benchmarks.md), the same numbers to 4e-9; FSDP's CPU shards keep the loop
    fused = device == "cuda" or (device == "cpu" and not sharded)
    return torch.optim.AdamW(parameters, **_adam(training, config), fused=fused)


def _adam(training: TrainingConfig, config: OptimizerConfig) -> dict[str, Any]:
    """AdamW's options (of the 8-bit one, GaLore's, APOLLO's and BAdam's base too)."""
    betas = (config.adam_beta1, config.adam_beta2)
    return {
        "lr": training.learning_rate,
        "betas": betas,
        "eps": config.adam_epsilon,
        "weight_decay": training.weight_decay,
    }


def _groups(model: torch.nn.Module, training: TrainingConfig, lora: LoraConfig) -> list[tuple[Named, float]]:
    """(named trainable weights, learning rate): all of them at learning_rate; with LoRA+ the B matrices second,
    at `loraplus_lr_ratio` times it."""
    normal: Named = []
    b_matrices: Named = []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (b_matrices if lora.loraplus_lr_ratio and "lora_B" in name else normal).append((name, parameter))
    groups = [(normal, training.learning_rate)]
    if b_matrices and lora.loraplus_lr_ratio:  # LoRA+: B learns `ratio` times faster than A
        groups.append((b_matrices, training.learning_rate * lora.loraplus_lr_ratio))
    return [(named, lr) for named, lr in groups if named]


def _package(name: str) -> Any:
    module, extra = PACKAGES[name]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise StudioError("training.optimizer_package_missing", name=name, package=module, extra=extra) from None


# -- GaLore and APOLLO ------------------------------------------------------------------


def _projecting(
    model: torch.nn.Module, groups: list[tuple[Named, float]], training: TrainingConfig, config: OptimizerConfig
) -> torch.optim.Optimizer:
    """Each group split in two: its weights outside the targets (plain AdamW) and the target weights, whose group
    carries the projection options (the package projects the weights of a group with a "rank")."""
    from studio.training.projectors import keep_projectors_plain

    package = _package(config.name)
    galore = config.name == "galore"
    targets = config.galore_target if galore else config.apollo_target
    projected = _projected_weights(model, targets)
    if not projected:
        raise StudioError("training.optimizer_no_targets", name=config.name, targets=", ".join(targets))
    options = _projection_options(config)
    parameters = []
    for named, lr in groups:
        plain = [p for _, p in named if id(p) not in projected]
        target = [p for _, p in named if id(p) in projected]
        parameters += [{"params": plain, "lr": lr}] if plain else []
        parameters += [{"params": target, "lr": lr, **options}] if target else []
    adam = _adam(training, config)
    if galore:
        optimizer = package.GaLoreAdamW(parameters, **adam, no_deprecation_warning=True)
    else:
        optimizer = package.APOLLOAdamW(parameters, **adam, scale_front=config.apollo_scale_front)
    keep_projectors_plain(optimizer, _galore_projector if galore else _apollo_projector)
    return optimizer


def _projected_weights(model: torch.nn.Module, targets: list[str]) -> set[int]:
    """ids of the trainable 2-D weights of linear layers whose name contains a target (LLaMA-Factory's rule);
    'all': every linear layer but the output layer and, in a vision-language model, but the projector
    (`projection_skips`: the language model's layers, and the vision tower's when it is not frozen)."""
    output = _output_layer(model)
    skipped = projection_skips(model) if targets == ["all"] else ()
    found = set()
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or module is output or inside(name, skipped):
            continue
        if targets != ["all"] and not any(target in name for target in targets):
            continue
        found |= {id(p) for p in module.parameters(recurse=False) if p.requires_grad and p.ndim == 2}
    return found


def _projection_options(config: OptimizerConfig) -> dict[str, Any]:
    if config.name == "galore":
        return {
            "rank": config.galore_rank,
            "update_proj_gap": config.galore_update_interval,
            "scale": config.galore_scale,
            "proj_type": config.galore_proj_type,
        }
    return {
        "rank": config.apollo_rank,
        "proj": config.apollo_proj,
        "proj_type": config.apollo_proj_type,
        "update_proj_gap": config.apollo_update_interval,
        "scale": config.apollo_scale,
        "scale_type": config.apollo_scale_type,
    }


def _galore_projector(group: dict) -> type:
    from galore_torch.galore_projector import GaLoreProjector

    return GaLoreProjector


def _apollo_projector(group: dict) -> type:
    if group["proj"] == "random":
        from apollo_torch.random_projector import GradientProjector

        return GradientProjector
    from apollo_torch.svd_projector import GaLoreProjector

    return GaLoreProjector


# -- BAdam ------------------------------------------------------------------------------


def _badam(
    model: torch.nn.Module, groups: list[tuple[Named, float]], training: TrainingConfig, config: OptimizerConfig
) -> torch.optim.Optimizer:
    from studio.training.blocks import block_optimizer

    _package("badam")
    if len(groups) > 1:  # the package gives every block the first group's learning rate
        raise StudioError("training.loraplus_not_with_badam")
    named = groups[0][0]
    # LLaMA-Factory's BAdam steps only the decoder blocks, so an unfrozen vision tower or projector stays as it is
    # there; trained at every step here, a text-only batch leaves them no gradient, which the package refuses
    parts = parts_of(model)
    if parts and any(inside(name, parts.vision + parts.projector) for name, _ in named):
        raise StudioError("training.badam_vision_parts")
    base = torch.optim.AdamW([p for _, p in named], **_adam(training, config))
    output = _output_layer(model)
    weight = output.weight if isinstance(output, torch.nn.Linear) else None
    return block_optimizer(base, named, config, output=weight, seed=training.seed)


def _output_layer(model: torch.nn.Module) -> torch.nn.Module | None:
    """The layer that maps hidden states to the vocabulary (None for a model without one)."""
    find = getattr(model, "get_output_embeddings", None)
    output = find() if callable(find) else None
    return output if isinstance(output, torch.nn.Module) else None


# -- the learning-rate schedule ---------------------------------------------------------


def build_scheduler(
    optimizer: torch.optim.Optimizer, training: TrainingConfig, total_steps: int, *, evaluates: bool = True
) -> LRScheduler:
    """transformers' schedule `training.lr_scheduler` with its options; `evaluates`: whether the run evaluates
    (the schedules stepped by evaluations need it)."""
    from transformers import get_scheduler

    if training.lr_scheduler in METRIC_SCHEDULERS and not evaluates:
        raise StudioError("training.scheduler_needs_evaluation", name=training.lr_scheduler)
    return get_scheduler(
        training.lr_scheduler,
        optimizer,
        num_warmup_steps=training.warmup_steps,
        num_training_steps=total_steps,
        scheduler_specific_kwargs=scheduler_options(optimizer, training, total_steps),
    )


def scheduler_options(optimizer: torch.optim.Optimizer, training: TrainingConfig, total_steps: int) -> dict[str, Any]:
    """The keyword arguments transformers' schedule function of `training.lr_scheduler` gets (its
    `lr_scheduler_kwargs`); options left empty keep transformers' defaults."""
    name, floor, lr = training.lr_scheduler, training.lr_min_ratio, training.learning_rate
    cycles = {} if training.lr_num_cycles is None else {"num_cycles": training.lr_num_cycles}
    if name in ("cosine", "cosine_with_restarts"):
        return cycles
    if name in ("cosine_with_min_lr", "cosine_warmup_with_min_lr"):
        return cycles | {"min_lr_rate": floor}
    if name == "polynomial":
        return {"power": training.lr_power, "lr_end": floor * lr}
    if name == "inverse_sqrt":
        return {} if training.lr_timescale is None else {"timescale": training.lr_timescale}
    if name == "warmup_stable_decay":
        after_warmup = max(1, total_steps - training.warmup_steps)
        decay = min(training.lr_decay_steps or max(1, total_steps // 10), after_warmup)
        types = {"warmup_type": training.lr_warmup_type, "decay_type": training.lr_decay_type}
        return cycles | types | {"num_decay_steps": decay, "min_lr_ratio": floor}
    if name in METRIC_SCHEDULERS:
        return _metric_options(optimizer, training)
    return {}


def _metric_options(optimizer: torch.optim.Optimizer, training: TrainingConfig) -> dict[str, Any]:
    """reduce_lr_on_plateau and greedy: better is lower for eval_loss, higher for the rewards; each group's
    learning rate stays between lr_min_ratio times its start and (greedy, which also raises it) its start."""
    starts = [group["lr"] for group in optimizer.param_groups]
    options: dict[str, Any] = {
        "mode": "min" if training.tracked_metric == "eval_loss" else "max",
        "min_lr": [training.lr_min_ratio * lr for lr in starts],
    }
    options |= {} if training.lr_factor is None else {"factor": training.lr_factor}
    options |= {} if training.lr_patience is None else {"patience": training.lr_patience}
    if training.lr_scheduler == "greedy":
        options["max_lr"] = starts
    return options


def steps_on_metric(training: TrainingConfig) -> bool:
    """Whether the schedule moves at evaluations (by the tracked metric) rather than at optimizer steps."""
    return training.lr_scheduler in METRIC_SCHEDULERS


def step_on_metric(scheduler: Any, value: float) -> None:
    """An evaluation's tracked metric to a schedule stepped by evaluations."""
    scheduler.step(value)
