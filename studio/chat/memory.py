"""Measuring and giving back memory when a model is unloaded."""

from __future__ import annotations

import ctypes
import gc
import resource
from dataclasses import dataclass


@dataclass(frozen=True)
class MemoryReading:
    rss_mib: float
    cuda_allocated_mib: float | None

    def minus(self, other: MemoryReading) -> str:
        parts = [f"RSS {self.rss_mib - other.rss_mib:+.0f} MiB"]
        if self.cuda_allocated_mib is not None and other.cuda_allocated_mib is not None:
            parts.append(f"CUDA {self.cuda_allocated_mib - other.cuda_allocated_mib:+.0f} MiB")
        return ", ".join(parts)


def read_memory() -> MemoryReading:
    import torch

    cuda = torch.cuda.memory_allocated() / 2**20 if torch.cuda.is_available() else None
    return MemoryReading(round(_rss_mib(), 1), None if cuda is None else round(cuda, 1))


def _rss_mib() -> float:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def release_memory() -> None:
    """Collect garbage and hand freed memory back to the OS (CUDA cache; glibc heap on Linux)."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # glibc keeps freed heap pages unless asked
    except (OSError, AttributeError):
        pass
