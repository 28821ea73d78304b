"""What the devices of a run have free now: each chosen GPU's memory, or the machine's RAM for a CPU run.

GPUs are read with nvidia-smi, which opens no CUDA context (torch.cuda.mem_get_info would keep one, about
half a GiB, in the web server for as long as it runs); torch is asked only where nvidia-smi is missing.
RAM is what the kernel says is available, bounded by the memory limit of the cgroup this process runs in
(a container's limit, which psutil does not know about).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from studio.control.devices import DevicePlan
from studio.gpu_monitor import read_gpus

GIB = 2**30
# (limit, usage) files of cgroup v2, then v1; a v1 "no limit" is a huge number, v2 says "max"
CGROUP_FILES = (
    (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory.current")),
    (Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"), Path("/sys/fs/cgroup/memory/memory.usage_in_bytes")),
)


@dataclass(frozen=True)
class DeviceMemory:
    device: str  # "cpu", or "cuda:N" as training.devices counts GPUs
    name: str
    free_gib: float
    total_gib: float


def free_memory(plan: DevicePlan) -> list[DeviceMemory]:
    """One reading per device of the plan: each of its GPUs, or the CPU (whose processes all share the RAM).
    A GPU that cannot be read is left out."""
    if plan.kind == "cpu":
        return [cpu_memory()]
    return gpu_memory(plan.gpus)


def cpu_memory(cgroup_files: tuple[tuple[Path, Path], ...] = CGROUP_FILES) -> DeviceMemory:
    import psutil

    memory = psutil.virtual_memory()
    free, total = float(memory.available), float(memory.total)
    room = _cgroup_room(cgroup_files)
    if room is not None:
        limit, used = room
        free, total = min(free, max(0.0, limit - used)), min(total, limit)
    return DeviceMemory("cpu", f"CPU ×{os.cpu_count() or 1}", free / GIB, total / GIB)


def _cgroup_room(files: tuple[tuple[Path, Path], ...]) -> tuple[float, float] | None:
    """(limit, usage) in bytes of the first cgroup memory controller that sets a limit; None without one."""
    for limit_file, usage_file in files:
        try:
            limit_text, usage_text = limit_file.read_text().strip(), usage_file.read_text().strip()
        except OSError:
            continue
        if limit_text == "max" or not limit_text.isdigit() or not usage_text.isdigit():
            continue
        limit = float(limit_text)
        if limit >= 2**60:  # cgroup v1 writes "no limit" as the largest page-aligned number
            continue
        return limit, float(usage_text)
    return None


def gpu_memory(gpus: tuple[int, ...]) -> list[DeviceMemory]:
    """The GPUs numbered as training.devices counts them (within CUDA_VISIBLE_DEVICES)."""
    visible = [name.strip() for name in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if name.strip()]
    readings = {str(reading.index): reading for reading in read_gpus()}
    found = []
    for index in gpus:
        physical = visible[index] if index < len(visible) else str(index)
        reading = readings.get(physical)
        if reading is not None:
            free = max(0.0, reading.total_mib - reading.used_mib) / 1024
            found.append(DeviceMemory(f"cuda:{index}", reading.name, free, reading.total_mib / 1024))
    if len(found) == len(gpus):
        return found
    return _torch_gpu_memory(gpus)


def _torch_gpu_memory(gpus: tuple[int, ...]) -> list[DeviceMemory]:
    import torch

    if not torch.cuda.is_available():
        return []
    found = []
    for index in gpus:
        free, total = torch.cuda.mem_get_info(index)
        found.append(DeviceMemory(f"cuda:{index}", torch.cuda.get_device_name(index), free / GIB, total / GIB))
    return found
