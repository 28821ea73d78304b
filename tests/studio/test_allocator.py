"""CPU workers get tcmalloc preloaded when the system has it, and only then."""

from __future__ import annotations

import studio.allocator as allocator


def test_preloads_the_library_ahead_of_existing_preloads(monkeypatch):
    monkeypatch.delenv(allocator.OPT_OUT, raising=False)
    monkeypatch.setattr(
        allocator.ctypes.util,
        "find_library",
        lambda name: "libtcmalloc_minimal.so.4" if name == "tcmalloc_minimal" else None,
    )
    env = allocator.with_fast_allocator({"LD_PRELOAD": "libother.so"})
    assert env["LD_PRELOAD"] == "libtcmalloc_minimal.so.4 libother.so"
    assert allocator.with_fast_allocator(env) == env  # never twice


def test_nothing_changes_without_the_library_or_when_opted_out(monkeypatch):
    monkeypatch.setattr(allocator.ctypes.util, "find_library", lambda name: None)
    assert allocator.with_fast_allocator({"A": "1"}) == {"A": "1"}
    monkeypatch.setattr(allocator.ctypes.util, "find_library", lambda name: "libtcmalloc.so.4")
    monkeypatch.setenv(allocator.OPT_OUT, "system")
    assert "LD_PRELOAD" not in allocator.with_fast_allocator({})
