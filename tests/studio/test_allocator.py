"""CPU workers get tcmalloc preloaded when the system has it, else glibc's malloc tuned; never both."""

from __future__ import annotations

import subprocess
import sys

import pytest

import studio.allocator as allocator


@pytest.fixture
def tcmalloc_installed(monkeypatch):
    monkeypatch.setattr(
        allocator.ctypes.util,
        "find_library",
        lambda name: "libtcmalloc_minimal.so.4" if name == "tcmalloc_minimal" else None,
    )


@pytest.fixture
def no_tcmalloc(monkeypatch):
    monkeypatch.setattr(allocator.ctypes.util, "find_library", lambda name: None)


def test_preloads_tcmalloc_ahead_of_existing_preloads_without_tuning_glibc(tcmalloc_installed):
    env = allocator.with_worker_allocator({"LD_PRELOAD": "libother.so"})
    assert env["LD_PRELOAD"] == "libtcmalloc_minimal.so.4 libother.so"
    assert not any(key.startswith("MALLOC_") for key in env)
    assert allocator.with_worker_allocator(env) == env  # never twice


def test_without_tcmalloc_glibc_is_tuned_and_settings_already_there_win(no_tcmalloc):
    assert allocator.with_worker_allocator({"A": "1"}) == {**allocator.GLIBC_TUNING, "A": "1"}
    assert allocator.GLIBC_TUNING["MALLOC_MMAP_THRESHOLD_"] == "262144"  # fixed, so glibc's dynamic one is off
    mine = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_ARENA_MAX": "4"}
    assert allocator.with_worker_allocator(mine) == mine


def test_glibc_chosen_over_installed_tcmalloc(tcmalloc_installed):
    env = allocator.with_worker_allocator({allocator.OPT_OUT: "glibc"})
    assert "LD_PRELOAD" not in env
    assert env == {allocator.OPT_OUT: "glibc", **allocator.GLIBC_TUNING}


@pytest.mark.parametrize("installed", ["tcmalloc_installed", "no_tcmalloc"])
def test_opting_out_changes_nothing(installed, request):
    request.getfixturevalue(installed)
    env = {allocator.OPT_OUT: "system", "A": "1"}
    assert allocator.with_worker_allocator(env) == env


def test_an_unknown_choice_is_auto(no_tcmalloc):
    env = {allocator.OPT_OUT: "jemalloc"}
    assert allocator.with_worker_allocator(env) == {**env, **allocator.GLIBC_TUNING}


def test_a_process_says_what_it_runs_with(no_tcmalloc):
    """What the worker's log line 'Memory allocator: ...' prints, read in a process started with the tuning."""
    env = allocator.with_worker_allocator({"PATH": "/usr/bin:/bin"})
    described = subprocess.run(
        [sys.executable, "-c", "from studio.allocator import allocator_in_use; print(allocator_in_use())"],
        env={**env, "PYTHONPATH": ":".join(sys.path)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert described.startswith("glibc malloc, tuned (")
    for key, value in allocator.GLIBC_TUNING.items():
        assert f"{key}={value}" in described
