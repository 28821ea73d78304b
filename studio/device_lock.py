"""One training run per device, machine-wide: a small JSON lock file per device in the cache.

The holder is a worker pid (with its start time); a lock whose holder is gone is free, so a
crashed worker or service never leaves a device locked. Any number of services (CLI, UI,
scripts) on one machine see the same locks.
"""

from __future__ import annotations

import fcntl
import json
from contextlib import contextmanager
from pathlib import Path

from studio.errors import StudioError
from studio.paths import cache_dir
from studio.processes import is_alive


class DeviceBusy(StudioError):
    def __init__(self, device: str, run_dir: str):
        self.device, self.run_dir = device, run_dir
        super().__init__(
            f"The {device.upper()} is busy training run '{Path(run_dir).name}' ({run_dir}). "
            "Runs never share a device: abort that run or wait until it ends, then start again.",
            f"{device.upper()} 正在训练 '{Path(run_dir).name}'（{run_dir}）。同一设备一次只训练一个任务："
            "请中止该训练或等它结束后再开始。",
        )


class DeviceLocks:
    def __init__(self, folder: Path | None = None):
        self.folder = folder or cache_dir() / "device-locks"
        self.folder.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def _guard(self, device: str):
        with open(self.folder / f"{device}.guard", "w") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            yield self.folder / f"{device}.json"

    def holder(self, device: str) -> dict | None:
        with self._guard(device) as path:
            return self._live_holder(path)

    def _live_holder(self, path: Path) -> dict | None:
        try:
            holder = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return holder if is_alive(holder.get("pid"), holder.get("pid_started")) else None

    @contextmanager
    def acquire(self, device: str, run_dir: str):
        """Hold the guard while the caller spawns; the caller reports the worker via `record`."""
        with self._guard(device) as path:
            holder = self._live_holder(path)
            if holder:
                raise DeviceBusy(device, holder["run_dir"])
            yield lambda pid, started: path.write_text(
                json.dumps({"run_dir": run_dir, "pid": pid, "pid_started": started})
            )

    def release(self, device: str, pid: int) -> None:
        with self._guard(device) as path:
            try:
                if json.loads(path.read_text()).get("pid") == pid:
                    path.unlink()
            except (FileNotFoundError, ValueError):
                pass
