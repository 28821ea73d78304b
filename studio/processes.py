"""Telling whether a worker process is still the one we started (pids get recycled)."""

from __future__ import annotations

import os


def process_start_time(pid: int) -> float | None:
    """Start time of `pid` in clock ticks since boot, or None when it does not exist."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return float(fields[19])  # field 22 of stat; the split drops pid and comm
    except (OSError, IndexError, ValueError):
        return None


def is_alive(pid: int | None, started: float | None) -> bool:
    if not pid:
        return False
    now_started = process_start_time(pid)
    if now_started is None:
        try:
            os.kill(pid, 0)  # no /proc (macOS): fall back to existence
            return True
        except OSError:
            return False
    if _is_zombie(pid):
        return False
    return started is None or abs(now_started - started) < 1e-6


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def children(pid: int | None) -> list[int]:
    """The direct child processes of `pid` (Linux /proc); empty when it has none or is gone."""
    found: list[int] = []
    if not pid:
        return found
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for thread in threads:
        try:
            with open(f"/proc/{pid}/task/{thread}/children") as handle:
                found += [int(child) for child in handle.read().split()]
        except OSError:
            continue
    return found
