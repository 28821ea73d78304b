"""training.auto_batch_size: the largest micro-batch that fits, picked by the worker before its model loads.

From the memory estimate (with the training split's own lengths) against what the device has free then,
keeping a tenth of it in reserve for what the estimate misses. Packed runs size a micro-batch in tokens
(micro_batch_tokens), so the examples of a step stay what batch size x accumulation says. Padded runs size it
in examples: batch_size grows or shrinks (on a CPU up to a share of the step for each lane) and gradient
accumulation follows, so that a step keeps its examples when the new size divides them; otherwise the nearest
accumulation is taken and the log says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.config import RunConfig
from studio.memory_estimate import DataLengths, estimate_memory, size_text

Need = Callable[[dict[str, str]], float]  # GiB the config needs with these fields changed
RESERVE = 0.1  # of the free memory, kept back
TOKEN_STEPS = range(-3, 4)  # micro_batch_tokens tried: the default x 2^k


@dataclass(frozen=True)
class BatchChoice:
    changes: dict[str, str]  # dotted config fields to set
    need_gib: float
    free_gib: float
    note: str  # what the worker logs


def choose_micro_batch(
    config: RunConfig, model_dir: Path, device: str, lengths: DataLengths, free_gib: float
) -> BatchChoice:
    budget = free_gib * (1 - RESERVE)

    def need(changes: dict[str, str]) -> float:
        changed = config.with_overrides(changes)
        return estimate_memory(changed, model_dir, device=device, processes=1, lengths=lengths).total_gib

    if config.training.packing:
        return _tokens(config, device, lengths, budget, free_gib, need)
    return _examples(config, device, budget, free_gib, need)


def _tokens(
    config: RunConfig, device: str, lengths: DataLengths, budget: float, free: float, need: Need
) -> BatchChoice:
    """The largest micro_batch_tokens that fits, up to the first that holds a whole step (larger changes
    nothing)."""
    training = config.training
    step = training.batch_size * training.gradient_accumulation_steps * max(lengths.mean, 1.0)
    base = training.tokens_per_forward(device)
    tried = sorted({max(16, base * 2**k if k >= 0 else base // 2**-k) for k in TOKEN_STEPS})
    useful = [t for t in tried if t < step] + [next((t for t in tried if t >= step), tried[-1])]
    chosen = useful[0]
    for tokens in useful:
        if need({"training.micro_batch_tokens": str(tokens)}) <= budget:
            chosen = tokens
    changes = {"training.micro_batch_tokens": str(chosen)}
    needed = need(changes)
    fits = "" if needed <= budget else " It may not fit: the smallest tried is estimated above the free memory."
    note = (
        f"training.auto_batch_size: {chosen} tokens per forward pass (micro_batch_tokens; was {base}), "
        f"estimated {size_text(needed)} of {size_text(free)} free.{fits}"
    )
    return BatchChoice(changes, needed, free, note)


def _examples(config: RunConfig, device: str, budget: float, free: float, need: Need) -> BatchChoice:
    """The largest batch_size that fits, up to a step's examples shared among the CPU's lanes (a larger one
    would leave a lane without work)."""
    from studio.training.lanes import lanes_for

    training = config.training
    step = training.batch_size * training.gradient_accumulation_steps
    lanes = lanes_for(device, training.micro_batch_lanes, every_weight=config.finetuning.method == "full")
    low, high = 1, max(1, step // lanes)  # the estimate grows with batch_size: search for the last that fits
    while low < high:
        middle = (low + high + 1) // 2
        if need({"training.batch_size": str(middle)}) <= budget:
            low = middle
        else:
            high = middle - 1
    accumulation = max(1, round(step / low))
    changes = {"training.batch_size": str(low), "training.gradient_accumulation_steps": str(accumulation)}
    needed = need(changes)
    kept = (
        f"{step} examples a step as configured"
        if low * accumulation == step
        else f"{low * accumulation} examples a step instead of {step}: {low} does not divide {step}"
    )
    fits = "" if needed <= budget else " It may not fit: batch size 1 is estimated above the free memory."
    note = (
        f"training.auto_batch_size: micro-batches of {low} examples (was {training.batch_size}), gradient "
        f"accumulation {accumulation} ({kept}); estimated {size_text(needed)} of {size_text(free)} free.{fits}"
    )
    return BatchChoice(changes, needed, free, note)


def pick_for_worker(
    config: RunConfig, model_dir: Path, device: str, train: Sequence[Any], processes: int
) -> tuple[RunConfig, str]:
    """(the config to train with, the line the worker logs): the choice for the tokenised training split on this
    process's device. Several processes keep the configured batch: each would read its own free memory, and
    ranks that chose differently would wait on each other."""
    from studio.estimates.data_tokens import lengths_of

    if processes > 1:
        return config, "training.auto_batch_size: kept the configured batch (several processes)."
    choice = choose_micro_batch(
        config, model_dir, device, lengths_of(train, config.generation.max_new_tokens), _free_gib(device)
    )
    return config.with_overrides(choice.changes), choice.note


def _free_gib(device: str) -> float:
    """This process's device: the GPU it trains on (its CUDA context is made anyway), or the RAM."""
    if device == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info()
        return free / 2**30
    from studio.estimates.free_memory import cpu_memory

    return cpu_memory().free_gib
