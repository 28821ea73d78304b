"""The training service: the API the UI, the CLI and scripts call to run training.

Each run trains in its own worker subprocess (`python -m studio.worker RUN_DIR`) in a new
session, so closing the UI or the terminal never stops it. The run folder is the truth:
a restarted service re-attaches to live workers from their folders, and a worker that died
without a terminal event (kill -9, OOM, crash) is marked failed with its log tail.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from studio.allocator import with_fast_allocator
from studio.config import RunConfig
from studio.device_lock import DeviceLocks
from studio.events import Aborted, Event, Failed
from studio.processes import is_alive, process_start_time
from studio.run_folder import FINAL_STATES, RunFolder, RunStatus
from studio.validation import validate_run

ABORT_GRACE_S = 60.0


class RunNotFound(KeyError):
    def __str__(self) -> str:
        return f"No run named {self.args[0]!r}."


class TrainingService:
    def __init__(self, runs_dir: str | Path = "runs", locks: DeviceLocks | None = None, python: str = sys.executable):
        self.runs_dir = Path(runs_dir).resolve()
        self.locks = locks or DeviceLocks()
        self.python = python
        self._children: dict[str, subprocess.Popen] = {}
        self._abort_requested: set[str] = set()  # a death after an abort request is an abort, not a failure

    # -- starting -------------------------------------------------------------------

    def start(self, config: RunConfig) -> str:
        """Validate, create the run folder, spawn the worker; returns the run id.

        Raises ConfigError / DataError / ModelLoadError / DeviceBusy before anything is written.
        """
        validate_run(config)
        device = _training_device(config)
        self._let_finished_worker_exit(device)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        folder = RunFolder(self._new_run_path(config.name))
        config = config.model_copy(update={"training": config.training.model_copy(update={"output_dir": str(self.runs_dir)})})
        with self.locks.acquire(device, str(folder.path)) as record:
            folder.path.mkdir()
            try:
                config.save(folder.config_file)
                folder.write_status(RunStatus(run_id=folder.run_id, state="starting", device=device))
                self._spawn(folder, device, record)
            except BaseException:
                import shutil

                shutil.rmtree(folder.path, ignore_errors=True)  # nothing half-made is left behind
                raise
        return folder.run_id

    def resume(self, run_id: str) -> str:
        """Continue an aborted or failed run from its latest checkpoint, in the same folder."""
        folder = self._folder(run_id)
        status = self.status(run_id)
        if status.state not in ("aborted", "failed"):
            raise ValueError(f"Run {run_id} is {status.state}; only aborted or failed runs can be resumed.")
        checkpoint = folder.latest_checkpoint()
        if checkpoint is None:
            raise ValueError(f"Run {run_id} has no checkpoint to resume from; start it again instead.")
        config = folder.load_config()
        config.training.resume_from_checkpoint = str(checkpoint)
        validate_run(config)
        device = _training_device(config)
        self._let_finished_worker_exit(device)
        self._abort_requested.discard(run_id)
        with self.locks.acquire(device, str(folder.path)) as record:
            config.save(folder.config_file)
            folder.write_status(status.model_copy(update={"state": "starting", "attempt": status.attempt + 1, "message": ""}))
            self._spawn(folder, device, record)
        return run_id

    def _let_finished_worker_exit(self, device: str, timeout: float = 30.0) -> None:
        """A worker that wrote its end is about to exit; wait for that rather than call the device busy."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            holder = self.locks.holder(device)
            status = RunFolder(holder["run_dir"]).read_status() if holder else None
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

    def _spawn(self, folder: RunFolder, device: str, record) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent.parent), env.get("PYTHONPATH")]))
        if device == "cpu":
            env = with_fast_allocator(env)
        with open(folder.log_file, "ab") as log:
            child = subprocess.Popen(
                [self.python, "-m", "studio.worker", str(folder.path)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True,
            )
        started = process_start_time(child.pid)
        record(child.pid, started)
        status = folder.read_status()
        folder.write_status(status.model_copy(update={"pid": child.pid, "pid_started": started}))
        self._children[folder.run_id] = child
        threading.Thread(target=self._reap, args=(folder, child, device), daemon=True).start()

    def _reap(self, folder: RunFolder, child: subprocess.Popen, device: str) -> None:
        code = child.wait()
        self.locks.release(device, child.pid)
        self._mark_dead(folder, code)

    # -- stopping -------------------------------------------------------------------

    def abort(self, run_id: str, grace_s: float = ABORT_GRACE_S) -> None:
        """Ask the worker to checkpoint and stop (SIGTERM); kill it if it has not ended after `grace_s`."""
        folder = self._folder(run_id)
        status = self.status(run_id)
        if status.state in FINAL_STATES:
            return
        self._abort_requested.add(run_id)
        _signal(status.pid, signal.SIGTERM)
        threading.Thread(target=self._escalate, args=(folder, status, grace_s), daemon=True).start()

    def _escalate(self, folder: RunFolder, status: RunStatus, grace_s: float) -> None:
        deadline = time.time() + grace_s
        while time.time() < deadline:
            if not is_alive(status.pid, status.pid_started):
                return
            time.sleep(0.5)
        _signal(status.pid, signal.SIGKILL)
        time.sleep(0.5)
        self._mark_dead(folder, -signal.SIGKILL)

    # -- reading --------------------------------------------------------------------

    def status(self, run_id: str) -> RunStatus:
        folder = self._folder(run_id)
        status = folder.read_status() or RunStatus(run_id=run_id, state="failed", message="no status.json")
        if status.state not in FINAL_STATES and run_id not in self._children:
            if not is_alive(status.pid, status.pid_started) and status.pid is not None:
                self._mark_dead(folder, None)
                status = folder.read_status() or status
        return status

    def list_runs(self) -> list[RunStatus]:
        if not self.runs_dir.is_dir():
            return []
        folders = [RunFolder(p) for p in self.runs_dir.iterdir() if (p / "config.yaml").is_file()]
        folders.sort(key=lambda f: f.config_file.stat().st_mtime, reverse=True)
        return [self.status(f.run_id) for f in folders]

    def read_events(self, run_id: str, offset: int = 0) -> tuple[list[Event], int]:
        return self._folder(run_id).read_events(offset)

    def folder(self, run_id: str) -> RunFolder:
        return self._folder(run_id)

    def wait(self, run_id: str, timeout: float | None = None, poll_s: float = 0.5) -> RunStatus:
        deadline = None if timeout is None else time.time() + timeout
        while True:
            status = self.status(run_id)
            if status.state in FINAL_STATES:
                return status
            if deadline is not None and time.time() > deadline:
                raise TimeoutError(f"Run {run_id} still {status.state} after {timeout} s.")
            time.sleep(poll_s)

    # -- internals ------------------------------------------------------------------

    def _folder(self, run_id: str) -> RunFolder:
        folder = RunFolder(self.runs_dir / run_id)
        if not folder.exists():
            raise RunNotFound(run_id)
        return folder

    @contextmanager
    def _exclusive(self, folder: RunFolder):
        import fcntl

        with open(folder.path / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def _mark_dead(self, folder: RunFolder, exit_code: int | None) -> None:
        """A worker that ended without a terminal event died: say so, with its last log lines."""
        with self._exclusive(folder):
            if folder.last_attempt_ended():
                return
            status = folder.read_status() or RunStatus(run_id=folder.run_id, state="failed")
            if folder.run_id in self._abort_requested:
                folder.append(Aborted(step=status.step, checkpoint=None))
                folder.write_status(status.model_copy(update={"state": "aborted", "message": "stopped before it could checkpoint"}))
                return
            reason = _death_reason(exit_code)
            folder.append(Failed(error=reason, traceback=folder.log_tail()))
            folder.write_status(status.model_copy(update={"state": "failed", "message": reason}))


def _death_reason(exit_code: int | None) -> str:
    if exit_code is None:
        return "The worker process disappeared without reporting an end (killed, out of memory, or machine restart)."
    if exit_code < 0:
        name = signal.Signals(-exit_code).name
        hint = " - often the kernel's out-of-memory killer" if exit_code == -signal.SIGKILL else ""
        return f"The worker was killed by {name}{hint}. See worker.log in the run folder."
    return f"The worker exited with code {exit_code} without reporting an end. See worker.log in the run folder."


def _signal(pid: int | None, signum: int) -> None:
    if pid:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def _training_device(config: RunConfig) -> str:
    from studio.modeling.compute import resolve_plan

    return resolve_plan(config.quantization, config.training).device
