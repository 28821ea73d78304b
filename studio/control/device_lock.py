"""One training run per device, machine-wide: a small JSON lock file per device in the cache.

Devices are the CPU ("cpu") and each GPU ("cuda0", "cuda1", ...), so runs on different GPUs
train at the same time. The holder is a worker pid (with its start time); a lock whose holder
is gone is free, so a crashed worker or service never leaves a device locked. Any number of
services (CLI, UI, scripts) on one machine see the same locks.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from studio.errors import StudioError
from studio.paths import cache_dir
from studio.processes import is_alive


def device_name(device: str) -> str:
    """How a person calls a lock's device: the CPU, GPU 0."""
    if device.startswith("cuda"):
        return f"GPU {device.removeprefix('cuda') or 0}"
    return device.upper()


class DeviceBusy(StudioError):
    def __init__(self, device: str, run_dir: str):
        self.device, self.run_dir = device, run_dir
        super().__init__("control.device_busy", name=device_name(device), run_name=Path(run_dir).name, run_dir=run_dir)


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
    def acquire(self, devices: list[str] | str, run_dir: str) -> Iterator[Callable[[int, float | None], None]]:
        """Hold the guards of all `devices` (taken in sorted order, so two runs never wait on each other) while
        the caller spawns; the caller reports the worker via the yielded `record(pid, started)`."""
        devices = sorted({devices} if isinstance(devices, str) else set(devices))
        with ExitStack() as stack:
            paths = [stack.enter_context(self._guard(device)) for device in devices]
            for device, path in zip(devices, paths):
                holder = self._live_holder(path)
                if holder:
                    raise DeviceBusy(device, holder["run_dir"])

            def record(pid: int, started: float | None) -> None:
                text = json.dumps({"run_dir": run_dir, "pid": pid, "pid_started": started})
                for path in paths:
                    path.write_text(text)

            yield record

    def release(self, devices: list[str] | str, pid: int) -> None:
        for device in [devices] if isinstance(devices, str) else devices:
            with self._guard(device) as path:
                try:
                    if json.loads(path.read_text()).get("pid") == pid:
                        path.unlink()
                except (FileNotFoundError, ValueError):
                    pass
