"""A faster memory allocator for CPU training workers, when the system has one.

A CPU training step allocates and frees hundreds of megabytes of activations; glibc's
malloc hands big blocks back to the kernel and takes them again as fresh, zeroed pages.
tcmalloc (Debian/Ubuntu package libtcmalloc-minimal4) keeps them (measured as the
`ours-system-malloc` lever in docs/benchmarks.md). It is preloaded into the worker only; setting
QLORA_STUDIO_ALLOCATOR=system keeps glibc's.
"""

from __future__ import annotations

import ctypes.util
import os

OPT_OUT = "QLORA_STUDIO_ALLOCATOR"
_LIBRARIES = ("tcmalloc_minimal", "tcmalloc")


def fast_allocator() -> str | None:
    """Path or soname of tcmalloc when installed, else None."""
    if os.environ.get(OPT_OUT) == "system":
        return None
    for name in _LIBRARIES:
        found = ctypes.util.find_library(name)
        if found:
            return found
    return None


def with_fast_allocator(env: dict[str, str]) -> dict[str, str]:
    """`env` with the allocator preloaded ahead of anything already in LD_PRELOAD."""
    library = fast_allocator()
    if library is None or library in env.get("LD_PRELOAD", ""):
        return env
    return {**env, "LD_PRELOAD": " ".join(filter(None, [library, env.get("LD_PRELOAD")]))}


def allocator_in_use() -> str:
    """Which allocator this process runs with, read from its own memory map."""
    try:
        with open("/proc/self/maps") as maps:
            text = maps.read()
    except OSError:
        return "the system's malloc"
    for name in ("tcmalloc", "jemalloc"):
        if name in text:
            return name
    return "the system's malloc"
