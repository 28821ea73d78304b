"""Will it fit: the memory estimate of each device of a run against what that device has free now.

A run that does not fit is offered the changes that would make it smaller, each checked by estimating the
changed config again: a change is offered only where it applies (4-bit only to a base not already
quantised, gradient checkpointing only when it is off, batch 1 only above it...) and only when it saves
memory, with how much. The ones that save most come first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from studio.config import RunConfig
from studio.config.base import ConfigError
from studio.control.devices import DevicePlan
from studio.errors import StudioError
from studio.estimates.free_memory import DeviceMemory
from studio.locales import Joined, Message, say
from studio.memory_estimate import DataLengths, MemoryEstimate, estimate_memory, size_text

MAX_SUGGESTIONS = 3


@dataclass(frozen=True)
class Suggestion:
    key: str  # its message (a key of CHANGES)
    changes: dict[str, str]  # dotted config fields, as the command line takes them
    saves_gib: float  # per device

    def describe(self) -> Message:
        return say(self.key, **self.changes_named(), saves=size_text(self.saves_gib))

    def changes_named(self) -> dict[str, str]:
        """The changes by their field name alone (the message templates' placeholders)."""
        return {path.rsplit(".", 1)[-1]: value for path, value in self.changes.items()}


@dataclass(frozen=True)
class DeviceFit:
    device: str  # "cpu" or "cuda:N"
    name: str
    need_gib: float  # the run's processes on this device together
    free_gib: float
    total_gib: float

    @property
    def spare_gib(self) -> float:
        """Free memory left once the run is in; negative: how much more it needs."""
        return self.free_gib - self.need_gib

    @property
    def fits(self) -> bool:
        return self.spare_gib >= 0

    def describe(self) -> Message:
        named = {"device": self.device, "need": size_text(self.need_gib), "free": size_text(self.free_gib)}
        if self.fits:
            return say("estimate.fits", **named, spare=size_text(self.spare_gib))
        return say("estimate.needs_more", **named, short=size_text(-self.spare_gib))


@dataclass(frozen=True)
class FitReport:
    estimate: MemoryEstimate  # per GPU, or per CPU process
    devices: list[DeviceFit]
    suggestions: list[Suggestion] = field(default_factory=list)
    assumed: StudioError | None = None  # why the data's own lengths were not used (every example at cutoff_len)

    @property
    def fits(self) -> bool:
        return all(device.fits for device in self.devices)

    def describe(self) -> Message:
        """One line per device, then what to try when one falls short."""
        lines: list[object] = [device.describe() for device in self.devices]
        if not self.devices:
            lines.append(say("estimate.free_unknown", need=size_text(self.estimate.total_gib)))
        if self.suggestions:
            tries = Joined("estimate.or", [s.describe() for s in self.suggestions])
            lines.append(say("estimate.try", suggestions=tries))
        if self.assumed is not None:
            lines.append(say("estimate.lengths_assumed", why=self.assumed))
        return Joined("list.separator", lines)


def check_fit(
    config: RunConfig,
    model_dir: Path,
    plan: DevicePlan,
    free: list[DeviceMemory],
    lengths: DataLengths | None = None,
    assumed: StudioError | None = None,
) -> FitReport:
    """The estimate for `config` on `plan`'s devices against `free` (studio.estimates.free_memory); `lengths`:
    the training split's (None: every example at cutoff_len, `assumed` saying why)."""
    gpu_gib = min((device.total_gib for device in free), default=None) if plan.kind == "cuda" else None

    def estimate(changed: RunConfig) -> MemoryEstimate:
        return estimate_memory(
            changed, model_dir, device=plan.kind, processes=plan.world_size, gpu_gib=gpu_gib, lengths=lengths
        )

    base = estimate(config)
    per_device = plan.processes if plan.kind == "cpu" else 1  # a CPU's processes share its RAM
    fits = [DeviceFit(d.device, d.name, base.total_gib * per_device, d.free_gib, d.total_gib) for d in free]
    report = FitReport(base, fits, assumed=assumed)
    if report.fits:
        return report
    return FitReport(base, fits, suggest(config, plan.kind, base, estimate), assumed)


def suggest(
    config: RunConfig, device: str, base: MemoryEstimate, estimate: Callable[[RunConfig], MemoryEstimate]
) -> list[Suggestion]:
    """The changes that apply to `config` and make its estimate smaller, those that save most first."""
    found = []
    for key, change in CHANGES.items():
        changes = change(config, device)
        if changes is None:
            continue
        try:
            changed = config.with_overrides(changes)
        except ConfigError:  # a combination the config refuses (e.g. 4-bit under a whole-model method)
            continue
        saves = base.total_gib - estimate(changed).total_gib
        if saves > 1 / 1024:  # at least a MiB
            found.append(Suggestion(key, changes, saves))
    return sorted(found, key=lambda s: -s.saves_gib)[:MAX_SUGGESTIONS]


# -- the changes: each returns the config fields to change, or None where it does not apply ------------------------


def _four_bit(config: RunConfig, device: str) -> dict[str, str] | None:
    quantization = config.quantization.method
    quantized = quantization in ("4bit", "8bit") or (quantization == "auto" and device == "cuda")
    if quantized or config.finetuning.trains_whole_model:
        return None
    return {"quantization.method": "4bit"}


def _lora(config: RunConfig, device: str) -> dict[str, str] | None:
    return {"finetuning.method": "lora"} if config.finetuning.trains_whole_model else None


def _checkpointing(config: RunConfig, device: str) -> dict[str, str] | None:
    return None if config.training.use_gradient_checkpointing(device) else {"training.gradient_checkpointing": "on"}


def _batch_1(config: RunConfig, device: str) -> dict[str, str] | None:
    """One example a micro-batch, with the accumulation that keeps the examples of a step."""
    training = config.training
    if training.batch_size == 1:
        return None
    step = training.batch_size * training.gradient_accumulation_steps
    return {"training.batch_size": "1", "training.gradient_accumulation_steps": str(step)}


def _fewer_tokens(config: RunConfig, device: str) -> dict[str, str] | None:
    tokens = config.training.tokens_per_forward(device)
    if not config.training.packing or tokens <= 128:
        return None
    return {"training.micro_batch_tokens": str(tokens // 2)}


def _shorter_cutoff(config: RunConfig, device: str) -> dict[str, str] | None:
    cutoff = config.data.cutoff_len
    return {"data.cutoff_len": str(cutoff // 2)} if cutoff >= 512 else None


def _one_lane(config: RunConfig, device: str) -> dict[str, str] | None:
    from studio.training.lanes import lanes_for

    every_weight = config.finetuning.method == "full"
    if device != "cpu" or lanes_for(device, config.training.micro_batch_lanes, every_weight=every_weight) == 1:
        return None
    return {"training.micro_batch_lanes": "1"}


def _no_dequantized_copies(config: RunConfig, device: str) -> dict[str, str] | None:
    return None if config.quantization.cache_dequantized == "off" else {"quantization.cache_dequantized": "off"}


# by the message that offers the change
CHANGES: dict[str, Callable[[RunConfig, str], dict[str, str] | None]] = {
    "estimate.try_4bit": _four_bit,
    "estimate.try_lora": _lora,
    "estimate.try_checkpointing": _checkpointing,
    "estimate.try_batch_1": _batch_1,
    "estimate.try_micro_batch_tokens": _fewer_tokens,
    "estimate.try_cutoff": _shorter_cutoff,
    "estimate.try_one_lane": _one_lane,
    "estimate.try_no_dequantized_copies": _no_dequantized_copies,
}
