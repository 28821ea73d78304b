"""The runs folder read and never written: what a page, a list or a terminal shows of each run.

A run's status is its status.json, except where that is out of date: a worker that died without writing its end
is shown with the end a supervisor records for it (`ending`), computed here, not written. Writing it is the
supervisor's work (studio/control/service.py: on reaping its own workers, and for every other run when it keeps
the queue, waits, follows, resumes or aborts), so that reading never changes a run folder.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import threading
from pathlib import Path

from studio.control.device_lock import DeviceLocks, device_name
from studio.control.devices import DevicePlan, plan_devices
from studio.control.launcher import rank_failure
from studio.errors import RunNotFound, StudioError
from studio.locales import Message, say
from studio.processes import is_alive
from studio.runs.events import Aborted, Event, Failed
from studio.runs.folder import FINAL_STATES, RUN_ID, WRITE_FAILED_EXIT, RunFolder, RunStatus, end_message

ATTEMPT_MARK = b"--- qlora-studio: a new attempt starts here ---"


class RunReader:
    def __init__(self, runs_dir: str | Path = "runs", locks: DeviceLocks | None = None):
        self.runs_dir = Path(runs_dir).resolve()
        self.locks = locks or DeviceLocks()
        self._parsed: dict[str, tuple[tuple, RunStatus]] = {}  # status.json by (mtime, size): lists stay cheap
        self._parsed_lock = threading.Lock()  # pages read from several threads at once

    def status(self, run_id: str) -> RunStatus:
        folder = self._folder(run_id)
        status = self._read_status(folder) or RunStatus(
            run_id=run_id, state="failed", message="the run folder has no status.json"
        )
        if status.state not in FINAL_STATES and self._worker_gone(status):
            status = ending(folder, status, exit_code=None, note=rank_failure_of(folder))[0]
        if status.state == "queued":
            status = self._queue_note(status)
        return status

    def list_runs(self) -> list[RunStatus]:
        """Every run, newest first; a folder that cannot be read is listed as unreadable, with why."""
        if not self.runs_dir.is_dir():
            return []
        found: list[tuple[float, RunStatus]] = []
        for path in self.runs_dir.iterdir():
            try:
                if not (path.is_dir() and (path / "config.yaml").is_file()):
                    continue
                found.append(((path / "config.yaml").stat().st_mtime, self.status(path.name)))
            except (OSError, StudioError) as error:
                found.append((0.0, RunStatus(run_id=path.name, state="unreadable", message=one_line(error))))
        return [status for _, status in sorted(found, key=lambda item: item[0], reverse=True)]

    def queued(self) -> list[RunStatus]:
        """Queued runs, oldest first."""
        if not self.runs_dir.is_dir():
            return []
        found = []
        for path in self.runs_dir.iterdir():
            try:
                status = self._read_status(RunFolder(path)) if (path / "status.json").is_file() else None
            except (OSError, StudioError):
                continue
            if status is not None and status.state == "queued":
                found.append(status)
        return sorted(found, key=lambda s: (s.queued_at or 0.0, s.run_id))

    def read_events(self, run_id: str, offset: int = 0) -> tuple[list[Event], int]:
        return self._folder(run_id).read_events(offset)

    def exists(self, run_id: str) -> bool:
        try:
            self._folder(run_id)
        except RunNotFound:
            return False
        return True

    def folder(self, run_id: str) -> RunFolder:
        return self._folder(run_id)

    def _worker_gone(self, status: RunStatus) -> bool:
        """The run's worker has ended (or never got a pid written while its starter died)."""
        return status.pid is not None and not is_alive(status.pid, status.pid_started)

    def _holder(self, devices: DevicePlan) -> tuple[str, str] | None:
        """(device, run folder holding it) for the first of the run's devices that is taken, or None."""
        for device in devices.lock_names:
            holder = self.locks.holder(device)
            if holder:
                return device, holder["run_dir"]
        return None

    def _queue_note(self, status: RunStatus) -> RunStatus:
        """A queued run's status says its place in the queue and what it waits for."""
        order = [s.run_id for s in self.queued()]
        place = order.index(status.run_id) + 1 if status.run_id in order else 1
        waiting: Message | str = ""
        try:
            busy = self._holder(plan_devices(self._folder(status.run_id).load_config()))
            if busy:
                waiting = say("control.queued_waiting", device=device_name(busy[0]), run=Path(busy[1]).name)
        except StudioError:
            pass
        note = say("control.queued", place=place, waiting=waiting)
        return status.model_copy(update={"queue_position": place, "message": note})

    def _read_status(self, folder: RunFolder) -> RunStatus | None:
        """status.json, parsed again only when it changed (twenty open pages list the runs often)."""
        try:
            info = folder.status_file.stat()
        except FileNotFoundError:
            return None
        stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
        with self._parsed_lock:
            cached = self._parsed.get(folder.run_id)
        if cached and cached[0] == stamp:
            return cached[1].model_copy()
        status = folder.read_status()
        if status is not None:
            with self._parsed_lock:
                self._parsed[folder.run_id] = (stamp, status.model_copy())
        return status

    def _folder(self, run_id: str) -> RunFolder:
        if not isinstance(run_id, str) or not RUN_ID.match(run_id):
            raise RunNotFound(str(run_id))
        folder = RunFolder(self.runs_dir / run_id)
        if not folder.exists():
            raise RunNotFound(run_id)
        return folder


def ending(
    folder: RunFolder, status: RunStatus, exit_code: int | None, note: str | None = None, aborted: bool = False
) -> tuple[RunStatus, Event | None]:
    """How an attempt whose worker has ended ends: its status and the terminal event still to be written (None when
    the worker wrote its own). `note`: torchrun's account of the rank that failed first; `aborted`: stopping was
    asked for (a death then is an abort, not a failure)."""
    ended = folder.last_terminal()
    if ended is not None:  # the end was written; only the status may lag behind it
        return status.model_copy(update={"state": ended.type, "message": end_message(ended)}), None
    if aborted or folder.abort_file.exists():
        stopped = status.model_copy(update={"state": "aborted", "message": "stopped before it could checkpoint"})
        return stopped, Aborted(step=status.step, checkpoint=None)
    reason = note or death_reason(exit_code, folder)
    return status.model_copy(update={"state": "failed", "message": reason}), Failed(
        error=reason, traceback=folder.log_tail()
    )


def rank_failure_of(folder: RunFolder) -> str | None:
    """torchrun's account of the first rank that failed (a run of several processes), from the log's end."""
    try:
        if (folder.read_status() or RunStatus(run_id="", state="failed")).processes < 2:
            return None
        return rank_failure(folder.log_tail(20000).rsplit(ATTEMPT_MARK.decode(), 1)[-1])
    except (OSError, StudioError):
        return None


def death_reason(exit_code: int | None, folder: RunFolder) -> str:
    if exit_code is not None and exit_code >= WRITE_FAILED_EXIT:
        code = exit_code - WRITE_FAILED_EXIT
        return (
            f"The worker could not write to its run folder: {os.strerror(code)} ({errno.errorcode.get(code, code)}). "
            "Free disk space or fix the folder's permissions, then resume the run."
        )
    if exit_code is None:
        problem = _folder_problem(folder.path)
        if problem:
            return (
                "The worker ended without reporting an end; most likely it could not write to its run folder: "
                f"{problem}."
            )
        return "The worker process disappeared without reporting an end (killed, out of memory, or machine restart)."
    if exit_code < 0:
        name = signal.Signals(-exit_code).name
        hint = " - often the kernel's out-of-memory killer" if exit_code == -signal.SIGKILL else ""
        return f"The worker was killed by {name}{hint}. See worker.log in the run folder."
    return f"The worker exited with code {exit_code} without reporting an end. See worker.log in the run folder."


def _folder_problem(path: Path) -> str | None:
    """Why a folder cannot be written, as far as can be told from outside."""
    if not os.access(path, os.W_OK):
        return "it is not writable (read-only file system or permissions)"
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        return None
    return f"the disk holding it is full ({free // 1024} KiB free)" if free < 4 * 2**20 else None


def one_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
