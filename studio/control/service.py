"""The training service: the API the UI, the CLI and scripts call to run training.

Each run trains in its own worker subprocess (`python -m studio.worker RUN_DIR`) in a new
session, so closing the UI or the terminal never stops it. The run folder is the truth:
a restarted service re-attaches to live workers from their folders, and a worker that died
without a terminal event (kill -9, OOM, crash) is marked failed with its log tail.

A run on busy devices can be queued instead (state `queued`, in its folder like any run); a
service that keeps the queue (`keep_queue`, the web server does) starts each queued run when
its devices free up, oldest first. Several services may keep the same queue: a run is started
under its folder's lock, so only once.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from studio.allocator import with_worker_allocator
from studio.config import RunConfig
from studio.control.device_lock import DeviceBusy, DeviceLocks, device_name
from studio.control.devices import DevicePlan, plan_devices
from studio.control.launcher import rank_failure, worker_command
from studio.control.validation import check_data, check_model, validate_run
from studio.errors import CheckpointError, RunNotFound, RunStateError, StudioError
from studio.processes import children, is_alive, process_start_time
from studio.runs.events import Aborted, AttemptStarted, Event, Failed, Log
from studio.runs.folder import (
    ENDED_STATES,
    FINAL_STATES,
    RUN_ID,
    WRITE_FAILED_EXIT,
    RunFolder,
    RunStatus,
    checkpoint_step,
    end_message,
)

ABORT_GRACE_S = 60.0
QUEUE_POLL_S = 2.0
ATTEMPT_MARK = b"--- qlora-studio: a new attempt starts here ---"
AbortOutcome = Literal["stopping", "cancelled", "ended"]  # asked to checkpoint and stop; left the queue; over already


@dataclass
class ResumePlan:
    """Which checkpoint a resumed run continues from, and why newer ones were passed over."""

    run_id: str
    checkpoint: Path
    step: int
    skipped: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        note = f" ({'; '.join(self.skipped)})" if self.skipped else ""
        return f"resuming from {self.checkpoint.name} (step {self.step}){note}"


class TrainingService:
    def __init__(self, runs_dir: str | Path = "runs", locks: DeviceLocks | None = None, python: str = sys.executable):
        self.runs_dir = Path(runs_dir).resolve()
        self.locks = locks or DeviceLocks()
        self.python = python
        self._children: dict[str, subprocess.Popen] = {}
        self._abort_requested: set[str] = set()  # a death after an abort request is an abort, not a failure
        self._unrecorded: dict[str, RunStatus] = {}  # ends the run folder could not take (disk full, read-only)
        self._parsed: dict[str, tuple[tuple, RunStatus]] = {}  # status.json by (mtime, size): lists stay cheap
        self._keeper: threading.Thread | None = None

    # -- starting -------------------------------------------------------------------

    def start(
        self, config: RunConfig, queue: bool = False, on_created: Callable[[str], None] = lambda run: None
    ) -> str:
        """Check (cheapest first), create the run folder, spawn the worker; returns the run id.

        Raises a StudioError (DeviceBusy, ModelLoadError, CheckpointError, DataError, ...) before anything is
        written. With `queue`, a run whose devices are busy is kept as `queued` instead of refused, and starts
        when they free up (see `keep_queue`). `on_created(run_id)` is called once the folder exists, before the
        worker is spawned. Whatever interrupts a start (KeyboardInterrupt included) leaves nothing behind: a worker
        it spawned is killed and the folder removed.
        """
        devices = plan_devices(config)
        busy = self._busy(devices)
        if busy and not queue:
            raise DeviceBusy(*busy)
        validate_run(config)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        folder = RunFolder(self._new_run_path(config.run_name))
        folder.path.mkdir()
        try:
            on_created(folder.run_id)
            config.save(folder.config_file)
            if busy:
                self._enqueue(folder, devices)
            else:
                try:
                    self._launch(folder, devices)
                except DeviceBusy:  # taken between the check and the launch
                    if not queue:
                        raise
                    self._enqueue(folder, devices)
        except BaseException:
            self._undo_start(folder)
            raise
        return folder.run_id

    def _undo_start(self, folder: RunFolder) -> None:
        """Nothing half-made is left behind: no worker (it has not trained yet), no folder."""
        child = self._children.pop(folder.run_id, None)
        if child is not None:
            child.kill()
            child.wait()
        shutil.rmtree(folder.path, ignore_errors=True)

    def _enqueue(self, folder: RunFolder, devices: DevicePlan) -> None:
        folder.write_status(
            RunStatus(run_id=folder.run_id, state="queued", device=devices.label, queued_at=time.time())
        )

    def _launch(self, folder: RunFolder, devices: DevicePlan) -> None:
        """The first attempt of a new (or queued) run: take its devices and spawn its worker."""
        with self.locks.acquire(devices.lock_names, str(folder.path)) as record:
            folder.write_status(
                RunStatus(run_id=folder.run_id, state="starting", device=devices.label, processes=devices.processes)
            )
            folder.append(AttemptStarted(attempt=1))
            self._spawn(folder, devices, record)

    def resume(self, run_id: str, checkpoint: int | None = None) -> ResumePlan:
        """Continue an aborted or failed run in its folder, from step `checkpoint` or the newest loadable checkpoint."""
        folder = self._folder(run_id)
        status = self.status(run_id)
        if status.state not in ("aborted", "failed"):
            raise RunStateError(
                f"Run {run_id} is {status.state}; only aborted or failed runs can be resumed.",
                f"训练 {run_id} 的状态为 {status.state}；只有已中止或失败的训练可以继续。",
            )
        config = folder.load_config()
        devices = plan_devices(config)
        busy = self._busy(devices)
        if busy:
            raise DeviceBusy(*busy)
        plan = choose_checkpoint(folder, checkpoint)
        check_model(config.model)
        check_data(config)
        self._abort_requested.discard(run_id)
        folder.abort_file.unlink(missing_ok=True)
        with self.locks.acquire(devices.lock_names, str(folder.path)) as record:
            attempt = status.attempt + 1
            folder.append(AttemptStarted(attempt=attempt, start_step=plan.step, resumed_from=str(plan.checkpoint)))
            for note in plan.skipped:
                folder.append(Log(level="warning", message=f"Resume: {note}"))
            folder.write_status(
                status.model_copy(
                    update={
                        "state": "starting",
                        "attempt": attempt,
                        "message": plan.message,
                        "resume_from": str(plan.checkpoint),
                        "pid": None,
                        "pid_started": None,
                        "device": devices.label,
                        "processes": devices.processes,
                    }
                )
            )
            self._unrecorded.pop(run_id, None)
            try:
                self._spawn(folder, devices, record)
            except OSError as error:  # no worker started: the attempt ends here, said so
                folder.append(Failed(error=f"The worker could not be started: {error}"))
                folder.write_status(
                    status.model_copy(update={"state": "failed", "attempt": attempt, "message": str(error)})
                )
                raise
        return plan

    def _busy(self, devices: DevicePlan, wait: bool = True) -> tuple[str, str] | None:
        """The cheapest check, so a busy device is reported before seconds of data and model checks:
        (device, run folder holding it), or None when all of the run's devices are free."""
        for device in devices.lock_names:
            if wait:
                self._let_finished_worker_exit(device)
            holder = self.locks.holder(device)
            if holder:
                return device, holder["run_dir"]
        return None

    def _let_finished_worker_exit(self, device: str, timeout: float = 30.0) -> None:
        """A worker that wrote its end is about to exit; wait for that rather than call the device busy."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            holder = self.locks.holder(device)
            try:
                status = RunFolder(holder["run_dir"]).read_status() if holder else None
            except StudioError:
                return
            if status is None or status.state not in FINAL_STATES:
                return
            time.sleep(0.2)

    def _new_run_path(self, name: str) -> Path:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        path, n = self.runs_dir / f"{name}-{stamp}", 1
        while path.exists():
            n += 1
            path = self.runs_dir / f"{name}-{stamp}-{n}"
        return path

    def _spawn(self, folder: RunFolder, devices: DevicePlan, record) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(Path(__file__).resolve().parent.parent), env.get("PYTHONPATH")])
        )
        env.update(devices.environment(env.get("CUDA_VISIBLE_DEVICES")))
        if devices.kind == "cpu":
            env = with_worker_allocator(env)
        command = worker_command(self.python, str(folder.path), devices, folder.load_config())
        with open(folder.log_file, "ab") as log:
            if devices.distributed:  # torchrun's failure summary is read back from after this line
                log.write(ATTEMPT_MARK + b"\n")
                log.flush()
            child = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        self._children[folder.run_id] = child  # first, so that a start broken off from here on can stop it
        started = process_start_time(child.pid)
        record(child.pid, started)
        status = folder.read_status()
        if status is None:  # written by this start before the spawn: a bug if it is gone
            raise RuntimeError(f"{folder.status_file} vanished while its worker was being started")
        folder.write_status(status.model_copy(update={"pid": child.pid, "pid_started": started}))
        threading.Thread(target=self._reap, args=(folder, child, devices, status.attempt), daemon=True).start()

    def _reap(self, folder: RunFolder, child: subprocess.Popen, devices: DevicePlan, attempt: int) -> None:
        code = child.wait()
        try:
            self.locks.release(devices.lock_names, child.pid)
        except OSError:
            pass  # a lock whose holder is dead counts as free anyway
        self._mark_dead(folder, code, attempt)
        if self._keeper is not None:  # its devices are free: the next queued run need not wait for a poll
            self._dispatch_safely()

    # -- the queue ------------------------------------------------------------------

    def keep_queue(self, poll_s: float = QUEUE_POLL_S) -> None:
        """From now on, start queued runs of this runs folder when their devices free up (a daemon thread)."""
        if self._keeper is None:
            self._keeper = threading.Thread(target=self._keep, args=(poll_s,), name="run-queue", daemon=True)
            self._keeper.start()

    def _keep(self, poll_s: float) -> None:
        while True:
            self._dispatch_safely()
            time.sleep(poll_s)

    def _dispatch_safely(self) -> None:
        try:
            self.dispatch_queue()
        except Exception:  # a bug, not a user error: said loudly, and the queue goes on
            import traceback

            traceback.print_exc()

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

    def dispatch_queue(self) -> list[str]:
        """Start every queued run whose devices are free, oldest first; returns the runs started."""
        started = []
        for status in self.queued():
            folder = RunFolder(self.runs_dir / status.run_id)
            try:
                devices = plan_devices(folder.load_config())
                if self._busy(devices, wait=False):
                    continue
                with folder.exclusive():
                    current = folder.read_status()
                    if current is None or current.state != "queued":
                        continue  # another service started or cancelled it
                    self._launch(folder, devices)
                started.append(status.run_id)
            except DeviceBusy:
                continue
            except (OSError, StudioError) as error:  # it can never start as it is: it fails, saying why
                self._fail_queued(folder, f"The queued run could not start: {_one_line(error)}")
        return started

    def _fail_queued(self, folder: RunFolder, reason: str) -> None:
        try:
            status = folder.read_status()
            if status is not None and status.state in ("queued", "starting"):
                folder.write_status(status.model_copy(update={"state": "failed", "message": reason}))
        except (OSError, StudioError):
            pass

    def _queue_note(self, status: RunStatus) -> RunStatus:
        """A queued run's status says its place in the queue and what it waits for."""
        order = [s.run_id for s in self.queued()]
        place = order.index(status.run_id) + 1 if status.run_id in order else 1
        waiting = ""
        try:
            busy = self._busy(plan_devices(self._folder(status.run_id).load_config()), wait=False)
            if busy:
                waiting = f", waiting for the {device_name(busy[0])} (run {Path(busy[1]).name})"
        except StudioError:
            pass
        return status.model_copy(update={"queue_position": place, "message": f"queued #{place}{waiting}"})

    # -- stopping -------------------------------------------------------------------

    def abort(self, run_id: str, grace_s: float = ABORT_GRACE_S) -> AbortOutcome:
        """Ask the worker to checkpoint and stop (SIGTERM); kill it if it has not ended after `grace_s`.
        A queued run is cancelled instead: it leaves the queue without ever starting."""
        folder = self._folder(run_id)
        status = self.status(run_id)
        if status.state in FINAL_STATES:
            return "ended"
        if status.state == "queued" and self._cancel_queued(folder):
            return "cancelled"
        status = self.status(run_id)  # it may have started meanwhile
        self._abort_requested.add(run_id)
        try:  # for every other service, too (a restarted server, the CLI): a worker killed early was aborted
            folder.abort_file.touch()
        except OSError:
            pass
        if status.processes > 1:  # torchrun's workers, told directly: the ranks agree to stop at the same step
            for pid in children(status.pid):
                _signal(pid, signal.SIGTERM)
        else:
            _signal(status.pid, signal.SIGTERM)
        threading.Thread(target=self._escalate, args=(folder, status, grace_s), daemon=True).start()
        return "stopping"

    def _cancel_queued(self, folder: RunFolder) -> bool:
        """A queued run leaves the queue without ever starting; False when it has started meanwhile."""
        with folder.exclusive():
            current = folder.read_status()
            if current is None or current.state != "queued":
                return False
            folder.write_status(current.model_copy(update={"state": "cancelled", "message": "cancelled while queued"}))
        return True

    def _escalate(self, folder: RunFolder, status: RunStatus, grace_s: float) -> None:
        deadline = time.time() + grace_s
        while time.time() < deadline:
            if not is_alive(status.pid, status.pid_started):
                return
            time.sleep(0.5)
        if status.processes > 1:  # torchrun starts each rank in a session of its own: each is killed by name
            for pid in children(status.pid):
                _signal(pid, signal.SIGKILL)
        _signal(status.pid, signal.SIGKILL)
        time.sleep(0.5)
        self._mark_dead(folder, -signal.SIGKILL, status.attempt)

    # -- reading --------------------------------------------------------------------

    def status(self, run_id: str) -> RunStatus:
        folder = self._folder(run_id)
        if run_id in self._unrecorded:
            return self._unrecorded[run_id]
        status = self._read_status(folder) or RunStatus(
            run_id=run_id, state="failed", message="the run folder has no status.json"
        )
        if status.state not in FINAL_STATES and run_id not in self._children:
            if status.pid is not None and not is_alive(status.pid, status.pid_started):
                self._mark_dead(folder, None, status.attempt)
                status = self._unrecorded.get(run_id) or folder.read_status() or status
        if status.state == "queued":
            status = self._queue_note(status)
        return status

    def _read_status(self, folder: RunFolder) -> RunStatus | None:
        """status.json, parsed again only when it changed (twenty open pages list the runs often)."""
        try:
            info = folder.status_file.stat()
        except FileNotFoundError:
            return None
        stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
        cached = self._parsed.get(folder.run_id)
        if cached and cached[0] == stamp:
            return cached[1].model_copy()
        status = folder.read_status()
        if status is not None:
            self._parsed[folder.run_id] = (stamp, status.model_copy())
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
                found.append((0.0, RunStatus(run_id=path.name, state="unreadable", message=_one_line(error))))
        return [status for _, status in sorted(found, key=lambda item: item[0], reverse=True)]

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

    def wait(self, run_id: str, timeout: float | None = None, poll_s: float = 0.5) -> RunStatus:
        deadline = None if timeout is None else time.time() + timeout
        while True:
            status = self.status(run_id)
            if status.state in ENDED_STATES:
                return status
            if deadline is not None and time.time() > deadline:
                raise TimeoutError(f"Run {run_id} still {status.state} after {timeout} s.")
            time.sleep(poll_s)

    # -- internals ------------------------------------------------------------------

    def _folder(self, run_id: str) -> RunFolder:
        if not isinstance(run_id, str) or not RUN_ID.match(run_id):
            raise RunNotFound(str(run_id))
        folder = RunFolder(self.runs_dir / run_id)
        if not folder.exists():
            raise RunNotFound(run_id)
        return folder

    def _mark_dead(self, folder: RunFolder, exit_code: int | None, attempt: int) -> None:
        """The worker of `attempt` has ended: if it wrote no terminal event, it died; say so, with its last log lines.

        A worker can take a moment to exit after writing its end, and a resumed attempt may have
        started meanwhile: the death of an older attempt's worker changes nothing.
        When the folder cannot take the news (disk full, read-only), the end is kept in memory,
        so every caller of this service still sees the run end and why.
        """
        note = None
        try:
            note = _rank_failure(folder)
            with folder.exclusive():
                self._record_death(folder, exit_code, attempt, note)
        except (OSError, StudioError) as error:
            try:
                known = folder.read_status()
            except StudioError:
                known = None
            if known is not None and known.attempt != attempt:
                return
            known = known or RunStatus(run_id=folder.run_id, state="failed", attempt=attempt)
            reason = f"{note or _death_reason(exit_code, folder)} (This could not be recorded in the run folder: "
            reason += f"{_one_line(error)})"
            self._unrecorded[folder.run_id] = known.model_copy(update={"state": "failed", "message": reason})

    def _record_death(self, folder: RunFolder, exit_code: int | None, attempt: int, note: str | None) -> None:
        """`note`: torchrun's account of the rank that failed first, for a run of several processes."""
        status = folder.read_status() or RunStatus(run_id=folder.run_id, state="failed", attempt=attempt)
        if status.attempt != attempt:
            return
        ended = folder.last_terminal()
        if ended is not None:  # the end was written; only the status may lag behind it
            if status.state != ended.type:
                folder.write_status(status.model_copy(update={"state": ended.type, "message": end_message(ended)}))
            return
        folder.repair_tail()
        if folder.run_id in self._abort_requested or folder.abort_file.exists():
            folder.append(Aborted(step=status.step, checkpoint=None))
            folder.write_status(
                status.model_copy(update={"state": "aborted", "message": "stopped before it could checkpoint"})
            )
            return
        reason = note or _death_reason(exit_code, folder)
        try:
            folder.append(Failed(error=reason, traceback=folder.log_tail()))
        finally:  # status.json is small and replaced whole: it may take the news when the event log cannot
            folder.write_status(status.model_copy(update={"state": "failed", "message": reason}))


def choose_checkpoint(folder: RunFolder, step: int | None = None) -> ResumePlan:
    """Checkpoint `step`, or the newest one whose files are intact; CheckpointError naming what is wrong."""
    from studio.runs.checkpoints import verify_checkpoint

    candidates = folder.checkpoints()
    if not candidates:
        raise CheckpointError(f"Run {folder.run_id} has no checkpoint to resume from; start it again instead.")
    if step is not None:
        chosen = [c for c in candidates if checkpoint_step(c) == step]
        if not chosen:
            steps = ", ".join(str(checkpoint_step(c)) for c in candidates)
            raise CheckpointError(
                f"Run {folder.run_id} has no checkpoint at step {step}; it has checkpoints at steps {steps}."
            )
        verify_checkpoint(chosen[0])
        return ResumePlan(folder.run_id, chosen[0], step)
    skipped: list[str] = []
    for candidate in candidates:
        try:
            verify_checkpoint(candidate)
            return ResumePlan(folder.run_id, candidate, checkpoint_step(candidate), skipped)
        except CheckpointError as error:
            skipped.append(f"{candidate.name} cannot be used: {error}")
    raise CheckpointError(f"No checkpoint of run {folder.run_id} can be used: " + "; ".join(skipped))


def _death_reason(exit_code: int | None, folder: RunFolder) -> str:
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


def _rank_failure(folder: RunFolder) -> str | None:
    """torchrun's account of the first rank that failed (a run of several processes), from the log's end."""
    try:
        if (folder.read_status() or RunStatus(run_id="", state="failed")).processes < 2:
            return None
        return rank_failure(folder.log_tail(20000).rsplit(ATTEMPT_MARK.decode(), 1)[-1])
    except (OSError, StudioError):
        return None


def _folder_problem(path: Path) -> str | None:
    """Why a folder cannot be written, as far as can be told from outside."""
    if not os.access(path, os.W_OK):
        return "it is not writable (read-only file system or permissions)"
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        return None
    return f"the disk holding it is full ({free // 1024} KiB free)" if free < 4 * 2**20 else None


def _one_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _signal(pid: int | None, signum: int) -> None:
    if pid:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
