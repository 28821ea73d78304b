"""The memory allocator of CPU training workers: tcmalloc when the system has it, else glibc's
malloc tuned for training.

A CPU training step allocates and frees hundreds of megabytes of activations. Untuned, glibc's
malloc raises its mmap threshold each time a big block is freed (up to 32 MiB), so from then on
blocks below that come from its heaps, one per thread that allocated (the lanes are threads),
where freed blocks stay as holes the kernel never gets back: about 500 MiB above the live
memory on the embedded model. A fixed threshold keeps big blocks out of the heaps, at the cost
of the kernel zeroing fresh pages for each (20-40% of the speed in most runs). tcmalloc
(Debian/Ubuntu package libtcmalloc-minimal4) keeps freed blocks in its own caches: faster, and
100-170 MiB more; it is preloaded instead when installed. Measured in docs/benchmarks.md (2026-11-23, allocators).

QLORA_STUDIO_ALLOCATOR picks: unset or `auto` as above, `glibc` the tuned glibc malloc even
where tcmalloc is installed, `system` the allocator the worker would have anyway, untouched.
Settings already in the environment win over the tuning (MALLOC_* variables; anything already
in LD_PRELOAD stays, behind tcmalloc).
"""

from __future__ import annotations

import ctypes.util
import os
from collections.abc import Mapping

OPT_OUT = "QLORA_STUDIO_ALLOCATOR"
CHOICES = ("auto", "glibc", "system")
_LIBRARIES = ("tcmalloc_minimal", "tcmalloc")

# glibc reads these at process start (aliases of its malloc tunables). A fixed mmap threshold also
# turns off the dynamic one, which would otherwise rise to 32 MiB after the first big free.
# Measured against the other glibc settings in docs/benchmarks.md (2026-11-23, allocator levers):
# MALLOC_ARENA_MAX, a larger trim threshold and top pad, or a 1-4 MiB threshold gained nothing
# or held more memory.
GLIBC_TUNING = {
    # blocks of 256 KiB or more (activations, logits, gradients) are mapped when allocated and
    # handed back to the kernel when freed; the heaps keep only small blocks
    "MALLOC_MMAP_THRESHOLD_": str(256 * 1024),
}


def choice(env: Mapping[str, str] = os.environ) -> str:
    """QLORA_STUDIO_ALLOCATOR's value; anything unknown is `auto` (the worker's log says which it got)."""
    value = env.get(OPT_OUT, "auto")
    return value if value in CHOICES else "auto"


def fast_allocator(env: Mapping[str, str] = os.environ) -> str | None:
    """Path or soname of tcmalloc when installed and chosen, else None."""
    if choice(env) != "auto":
        return None
    for name in _LIBRARIES:
        found = ctypes.util.find_library(name)
        if found:
            return found
    return None


def with_worker_allocator(env: dict[str, str]) -> dict[str, str]:
    """`env` for a CPU training worker: tcmalloc preloaded ahead of anything already in
    LD_PRELOAD, or glibc's malloc tuning added where `env` does not set it already."""
    if choice(env) == "system":
        return env
    library = fast_allocator(env)
    if library is None:
        return GLIBC_TUNING | env
    if library in env.get("LD_PRELOAD", ""):
        return env
    return {**env, "LD_PRELOAD": " ".join(filter(None, [library, env.get("LD_PRELOAD")]))}


_SETTINGS = {"glibc malloc": ("MALLOC_", "GLIBC_TUNABLES"), "tcmalloc": ("TCMALLOC_",), "mimalloc": ("MIMALLOC_",)}


def allocator_in_use() -> str:
    """Which allocator this process runs with, read from its own memory map, and that allocator's
    settings from the environment: what the worker's log line 'Memory allocator: ...' says."""
    try:
        with open("/proc/self/maps") as maps:
            text = maps.read()
    except OSError:
        text = ""
    name = next((name for name in ("tcmalloc", "jemalloc", "mimalloc") if name in text), "glibc malloc")
    prefixes = _SETTINGS.get(name, ())
    settings = " ".join(f"{key}={value}" for key, value in sorted(os.environ.items()) if key.startswith(prefixes))
    return f"{name}, tuned ({settings})" if settings else f"{name}, untuned"
