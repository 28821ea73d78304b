"""The training service, the supervisor of runs: it starts, queues, reaps, resumes and aborts them.

Each run trains in its own worker subprocess (`python -m studio.worker RUN_DIR`) in a new
session, so closing the UI or the terminal never stops it. The run folder is the truth:
a restarted service re-attaches to live workers from their folders, and a worker that died
without a terminal event (kill -9, OOM, crash) is recorded as failed with its log tail — by the
service that reaps it, or by any service that keeps the queue, waits for the run, resumes or
aborts it. Reading (`status`, `list_runs`, studio/control/reader.py) never writes: it shows that
end before it is recorded.

A run on busy devices can be queued instead (state `queued`, in its folder like any run); a
service that keeps the queue (`keep_queue`, the web server does) starts each queued run when
its devices free up, oldest first. Several services may keep the same queue: a run is started
under its folder's lock, so only once.
"""

from __future__ import annotations

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
from studio.control.device_lock import DeviceBusy, DeviceLocks
from studio.control.devices import DevicePlan, plan_devices
from studio.control.launcher import worker_command
from studio.control.reader import ATTEMPT_MARK, RunReader, death_reason, ending, one_line, rank_failure_of
from studio.control.validation import check_data, check_model, validate_run
from studio.errors import CheckpointError, RunStateError, StudioError
from studio.locales import Joined, Message, say
from studio.processes import children, is_alive, process_start_time
from studio.runs.events import AttemptStarted, Failed, Log
from studio.runs.folder import (
    ENDED_STATES,
    FINAL_STATES,
    RunFolder,
    RunStatus,
    checkpoint_step,
)

ABORT_GRACE_S = 60.0
QUEUE_POLL_S = 2.0
AbortOutcome = Literal["stopping", "cancelled", "ended"]  # asked to checkpoint and stop; left the queue; over already


@dataclass
class ResumePlan:
    """Which checkpoint a resumed run continues from, and why newer ones were passed over."""

    run_id: str
    checkpoint: Path
    step: int
    skipped: list[Message] = field(default_factory=list)  # why each newer checkpoint was passed over

    @property
    def message(self) -> str:
        note = f" ({'; '.join(self.skipped)})" if self.skipped else ""
        return f"resuming from {self.checkpoint.name} (step {self.step}){note}"


class TrainingService(RunReader):
    def __init__(self, runs_dir: str | Path = "runs", locks: DeviceLocks | None = None, python: str = sys.executable):
        super().__init__(runs_dir, locks)
        self.python = python
        # what this service knows beyond the folders, shared by the page's threads, reapers and the queue keeper
        self._lock = threading.Lock()
        self._children: dict[str, subprocess.Popen] = {}
        self._reapers: dict[str, threading.Thread] = {}  # the thread waiting for each child to end
        self._starting: set[str] = set()  # runs whose start() has not returned: their end is start()'s to handle
        self._abort_requested: set[str] = set()  # a death after an abort request is an abort, not a failure
        self._unrecorded: dict[str, RunStatus] = {}  # ends the run folder could not take (disk full, read-only)
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
        validate_run(config, self.runs_dir)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        folder = RunFolder(self._new_run_path(config.run_name))
        folder.path.mkdir()
        with self._lock:
            self._starting.add(folder.run_id)
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
        finally:
            with self._lock:
                self._starting.discard(folder.run_id)
        return folder.run_id

    def _undo_start(self, folder: RunFolder) -> None:
        """Nothing half-made is left behind: no worker (it has not trained yet), no folder."""
        with self._lock:  # gone from here first: its reaper then records nothing in a folder about to go
            child = self._children.pop(folder.run_id, None)
            reaper = self._reapers.pop(folder.run_id, None)
        if child is not None:
            child.kill()
            child.wait()
        if reaper is not None:  # a reaper already writing the worker's end would leave files behind the removal
            reaper.join(timeout=30)
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
        status = self.settle(run_id)
        if status.state not in ("aborted", "failed"):
            raise RunStateError("control.resume_needs_ended", run_id=run_id, state=status.state)
        config = folder.load_config()
        devices = plan_devices(config)
        busy = self._busy(devices)
        if busy:
            raise DeviceBusy(*busy)
        plan = choose_checkpoint(folder, checkpoint)
        check_model(config.model)
        check_data(config)
        with self._lock:
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
            with self._lock:
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

    def let_finished_workers_exit(self, devices: DevicePlan) -> None:
        """Wait for the workers on `devices` that wrote their end to exit (a speed measurement after a run)."""
        for device in devices.lock_names:
            self._let_finished_worker_exit(device)

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

    def _spawn(self, folder: RunFolder, devices: DevicePlan, record: Callable[[int, float | None], None]) -> None:
        env = worker_environment(devices)
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
        with self._lock:  # first, so that a start broken off from here on can stop it
            self._children[folder.run_id] = child
        started = process_start_time(child.pid)
        record(child.pid, started)
        status = folder.read_status()
        if status is None:  # written by this start before the spawn: a bug if it is gone
            raise RuntimeError(f"{folder.status_file} vanished while its worker was being started")
        folder.write_status(status.model_copy(update={"pid": child.pid, "pid_started": started}))
        reaper = threading.Thread(target=self._reap, args=(folder, child, devices, status.attempt), daemon=True)
        with self._lock:
            self._reapers[folder.run_id] = reaper
        reaper.start()

    def _reap(self, folder: RunFolder, child: subprocess.Popen, devices: DevicePlan, attempt: int) -> None:
        code = child.wait()
        try:
            self.locks.release(devices.lock_names, child.pid)
        except OSError:
            pass  # a lock whose holder is dead counts as free anyway
        with self._lock:
            undone = self._children.get(folder.run_id) is not child  # its start was undone, or a newer attempt runs
        if not undone:
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
        """Ends recorded, then the queue dispatched; a bug is said loudly, and the keeper goes on."""
        try:
            self._settle_all()
            self.dispatch_queue()
        except Exception:
            import traceback

            traceback.print_exc()

    def dispatch_queue(self) -> list[str]:
        """Start every queued run whose devices are free, oldest first; returns the runs started."""
        started = []
        for status in self.queued():
            folder = RunFolder(self.runs_dir / status.run_id)
            try:
                devices = plan_devices(folder.load_config())
                if self._holder(devices):
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
                self._fail_queued(folder, f"The queued run could not start: {one_line(error)}")
        return started

    def _fail_queued(self, folder: RunFolder, reason: str) -> None:
        try:
            status = folder.read_status()
            if status is not None and status.state in ("queued", "starting"):
                folder.write_status(status.model_copy(update={"state": "failed", "message": reason}))
        except (OSError, StudioError):
            pass

    # -- stopping -------------------------------------------------------------------

    def abort(self, run_id: str, grace_s: float = ABORT_GRACE_S) -> AbortOutcome:
        """Ask the worker to checkpoint and stop (SIGTERM); kill it if it has not ended after `grace_s`.
        A queued run is cancelled instead: it leaves the queue without ever starting."""
        folder = self._folder(run_id)
        status = self.settle(run_id)
        if status.state in FINAL_STATES:
            return "ended"
        if status.state == "queued" and self._cancel_queued(folder):
            return "cancelled"
        status = self.settle(run_id)  # it may have started meanwhile
        with self._lock:
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

    def cancel_queued(self, run_id: str) -> bool:
        """Take a queued run out of the queue; False when it is not queued (started or ended meanwhile), which
        `abort` would then stop: a sweep's cancel leaves a training run alone unless asked."""
        return self._cancel_queued(self._folder(run_id))

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

    # -- reading, and recording what reading finds --------------------------------------------------------

    def status(self, run_id: str) -> RunStatus:
        """The run as its folder says, or as this service knows it when the folder could not take its end."""
        with self._lock:
            unrecorded = self._unrecorded.get(run_id)
        return unrecorded or super().status(run_id)

    def settle(self, run_id: str) -> RunStatus:
        """`status`, after recording the end of an attempt whose worker died unseen (its reaper gone with an earlier
        service, or a run started with --detach)."""
        self._record_if_dead(run_id)
        return self.status(run_id)

    def _record_if_dead(self, run_id: str) -> None:
        folder = self._folder(run_id)
        status = self._read_status(folder)
        if status is not None and status.state not in FINAL_STATES and self._worker_gone(status):
            self._mark_dead(folder, None, status.attempt)

    def wait(self, run_id: str, timeout: float | None = None, poll_s: float = 0.5) -> RunStatus:
        deadline = None if timeout is None else time.time() + timeout
        while True:
            status = self.settle(run_id)
            if status.state in ENDED_STATES:
                return status
            if deadline is not None and time.time() > deadline:
                raise TimeoutError(f"Run {run_id} still {status.state} after {timeout} s.")
            time.sleep(poll_s)

    def _settle_all(self) -> None:
        """Every run whose worker died unseen has its end recorded (the queue keeper does this at each poll).

        status.json as written, not `status()`: that already shows such a run with the end it will get."""
        if not self.runs_dir.is_dir():
            return
        for path in self.runs_dir.iterdir():
            try:
                if (path / "status.json").is_file():
                    self._record_if_dead(path.name)
            except (OSError, StudioError):
                continue  # an unreadable folder is listed as such; nothing here can record its end

    def _worker_gone(self, status: RunStatus) -> bool:
        with self._lock:  # this service's own workers are reaped as they end: their ends are recorded there
            reaping = status.run_id in self._children or status.run_id in self._starting
        return not reaping and super()._worker_gone(status)

    def _busy(self, devices: DevicePlan) -> tuple[str, str] | None:
        """The cheapest check, so a busy device is reported before seconds of data and model checks:
        (device, run folder holding it), or None when all of the run's devices are free."""
        for device in devices.lock_names:
            self._let_finished_worker_exit(device)
        return self._holder(devices)

    def _mark_dead(self, folder: RunFolder, exit_code: int | None, attempt: int) -> None:
        """The worker of `attempt` has ended: if it wrote no terminal event, it died; say so, with its last log lines.

        A worker can take a moment to exit after writing its end, and a resumed attempt may have
        started meanwhile: the death of an older attempt's worker changes nothing.
        When the folder cannot take the news (disk full, read-only), the end is kept in memory,
        so every caller of this service still sees the run end and why.
        """
        note = None
        try:
            note = rank_failure_of(folder)
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
            reason = f"{note or death_reason(exit_code, folder)} (This could not be recorded in the run folder: "
            reason += f"{one_line(error)})"
            with self._lock:
                self._unrecorded[folder.run_id] = known.model_copy(update={"state": "failed", "message": reason})

    def _record_death(self, folder: RunFolder, exit_code: int | None, attempt: int, note: str | None) -> None:
        """`note`: torchrun's account of the rank that failed first, for a run of several processes."""
        status = folder.read_status() or RunStatus(run_id=folder.run_id, state="failed", attempt=attempt)
        if status.attempt != attempt:
            return
        with self._lock:
            aborted = folder.run_id in self._abort_requested
        ended, event = ending(folder, status, exit_code, note, aborted)
        if event is None:  # the worker wrote its end; only the status may lag behind it
            if status.state != ended.state:
                folder.write_status(ended)
            return
        folder.repair_tail()
        try:
            folder.append(event)
        finally:  # status.json is small and replaced whole: it may take the news when the event log cannot
            folder.write_status(ended)


def worker_environment(devices: DevicePlan) -> dict[str, str]:
    """The environment a worker of `devices` is spawned with (training runs and speed measurements alike)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    # the folder that holds the studio package: studio/ itself on the path would let its modules hide the
    # standard library's of the same names
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH")]))
    env.update(devices.environment(env.get("CUDA_VISIBLE_DEVICES")))
    return with_worker_allocator(env) if devices.kind == "cpu" else env


def choose_checkpoint(folder: RunFolder, step: int | None = None) -> ResumePlan:
    """Checkpoint `step`, or the newest one whose files are intact; CheckpointError naming what is wrong."""
    from studio.runs.checkpoints import verify_checkpoint

    candidates = folder.checkpoints()
    if not candidates:
        raise CheckpointError("control.no_checkpoint", run_id=folder.run_id)
    if step is not None:
        chosen = [c for c in candidates if checkpoint_step(c) == step]
        if not chosen:
            steps = ", ".join(str(checkpoint_step(c)) for c in candidates)
            raise CheckpointError("control.no_checkpoint_at_step", run_id=folder.run_id, step=step, steps=steps)
        verify_checkpoint(chosen[0])
        return ResumePlan(folder.run_id, chosen[0], step)
    skipped: list[Message] = []
    for candidate in candidates:
        try:
            verify_checkpoint(candidate)
            return ResumePlan(folder.run_id, candidate, checkpoint_step(candidate), skipped)
        except CheckpointError as error:
            skipped.append(say("control.checkpoint_skipped", name=candidate.name, error=error))
    listed = Joined("list.separator", skipped)
    raise CheckpointError("control.no_usable_checkpoint", run_id=folder.run_id, skipped=listed)


def _signal(pid: int | None, signum: int) -> None:
    if pid:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
