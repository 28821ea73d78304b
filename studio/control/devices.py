"""Which devices a run trains on: training.devices read against this machine, and the machine's devices listed.

One process per GPU; on a CPU-only machine N processes share the cores, each with its part of them.
Locks are per device (`lock_names`), so runs on different GPUs train at the same time.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from studio.config import RunConfig
from studio.errors import StudioError
from studio.gpu_monitor import read_gpus
from studio.locales import say
from studio.runs.events import GpuReading


class DeviceChoiceError(StudioError):
    """training.devices names devices this machine does not have."""


@dataclass(frozen=True)
class DevicePlan:
    kind: str  # "cpu" or "cuda"
    gpus: tuple[int, ...] = ()  # GPU numbers on this machine; empty for the CPU
    processes: int = 1  # training processes on this machine
    nnodes: int = 1

    @property
    def world_size(self) -> int:
        return self.processes * self.nnodes

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def lock_names(self) -> list[str]:
        """One lock per GPU; the CPU is one device however many processes share it."""
        return [f"cuda{index}" for index in self.gpus] if self.kind == "cuda" else ["cpu"]

    @property
    def label(self) -> str:
        if self.kind == "cpu":
            return "cpu" if self.processes == 1 else f"cpu×{self.processes}"
        return "cuda:" + ",".join(str(index) for index in self.gpus)

    def threads_per_process(self, cores: int | None = None) -> int:
        return max(1, (cores or os.cpu_count() or 1) // self.processes)

    def environment(self, visible: str | None = None) -> dict[str, str]:
        """What the worker processes need in their environment: the GPUs they see (none for a CPU run, even on a
        GPU machine), and with several processes the share of the cores each may use. `visible`: the
        CUDA_VISIBLE_DEVICES this process runs under, which the GPU numbers count within."""
        names = [name for name in (visible or "").split(",") if name.strip()]
        gpus = [names[index] if index < len(names) else str(index) for index in self.gpus]
        env = {"CUDA_VISIBLE_DEVICES": ",".join(gpus)}
        if self.processes > 1:
            env["OMP_NUM_THREADS"] = str(self.threads_per_process())
        return env


def plan_devices(config: RunConfig, gpu_count: int | None = None) -> DevicePlan:
    """training.devices (and distributed.nnodes) on this machine; DeviceChoiceError for devices it lacks."""
    spec, nnodes = config.training.devices, config.distributed.nnodes
    count = _gpu_count() if gpu_count is None else gpu_count
    plan = _plan(spec, nnodes, count)
    if plan.distributed and config.distributed.strategy == "fsdp" and _quantizes(config, plan.kind):
        raise DeviceChoiceError("control.fsdp_cannot_shard_4bit")
    if plan.distributed and config.distributed.strategy == "fsdp" and config.finetuning.trains_whole_model:
        raise DeviceChoiceError("control.fsdp_whole_model", method=config.finetuning.method)
    if plan.distributed and config.distributed.strategy == "fsdp" and config.training.stage in ("ppo", "grpo"):
        raise DeviceChoiceError("control.fsdp_cannot_sample", stage=config.training.stage)
    return plan


def _quantizes(config: RunConfig, kind: str) -> bool:
    """Whether the base is quantised, as compute.resolve_plan decides (full and freeze never quantise)."""
    method, adapter = config.quantization.method, not config.finetuning.trains_whole_model
    return method in ("4bit", "8bit") or (method == "auto" and kind == "cuda" and adapter)


def _plan(spec: str, nnodes: int, count: int) -> DevicePlan:
    if spec == "cpu" or (count == 0 and spec in ("auto", "1")):
        return DevicePlan("cpu", nnodes=nnodes)
    if spec.isdigit():
        wanted = int(spec)
        if count == 0:  # a CPU-only machine: N processes share the cores
            return DevicePlan("cpu", processes=wanted, nnodes=nnodes)
        if wanted > count:
            raise _missing(say("control.gpu_count", count=wanted), count)
        return DevicePlan("cuda", tuple(range(wanted)), wanted, nnodes)
    if count == 0:
        raise DeviceChoiceError("control.no_gpu", spec=spec)
    gpus: tuple[int, ...]
    if spec in ("auto", "cuda"):
        gpus = (0,)
    else:
        gpus = tuple(dict.fromkeys(int(part) for part in spec.removeprefix("cuda:").split(",")))
        missing = [index for index in gpus if index >= count]
        if missing:
            raise _missing(f"GPU {', '.join(map(str, missing))}", count)
    return DevicePlan("cuda", gpus, len(gpus), nnodes)


def _missing(what: str, count: int) -> DeviceChoiceError:
    have = say("control.gpu_range", last=count - 1) if count > 1 else say("control.one_gpu")
    return DeviceChoiceError("control.devices_missing", what=what, have=have)


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@dataclass(frozen=True)
class DeviceInfo:
    """A device a person can tick: its value for training.devices and how it is doing."""

    value: str
    name: str
    total_mib: float | None = None
    free_mib: float | None = None

    @property
    def label(self) -> str:
        if self.total_mib is None or self.free_mib is None:
            return f"{self.value} · {self.name}"
        return f"{self.value} · {self.name} · {self.free_mib / 1024:.1f} / {self.total_mib / 1024:.1f} GiB free"


def list_devices(reader: Callable[[], list[GpuReading]] = read_gpus) -> list[DeviceInfo]:
    """The GPUs nvidia-smi reports (name, total and free memory), then the CPU."""
    gpus = [DeviceInfo(f"cuda:{g.index}", g.name, g.total_mib, max(0.0, g.total_mib - g.used_mib)) for g in reader()]
    return gpus + [DeviceInfo("cpu", f"CPU ×{os.cpu_count() or 1}")]


def devices_value(ticked: list[str]) -> str:
    """training.devices for the ticked devices: cpu, or cuda:0,2; auto when nothing is ticked."""
    gpus = sorted(int(value.split(":")[1]) for value in ticked if value.startswith("cuda:"))
    if gpus:
        return "cuda:" + ",".join(map(str, gpus))
    return "cpu" if "cpu" in ticked else "auto"
