"""Measure speed: a few real training steps of the planned run, in a scratch folder, within a time limit.

The run's own config trains through the real worker on the run's devices (which it locks meanwhile, as a run
would), nothing evaluated or saved, and only its first step logged: the steps after it are followed by the
heartbeats (at most one a second, step count and time), so the measurement pays no more for logging than a run
does (on a tiny model, logging every step took most of a step's time). Once the heartbeats cover enough steps,
or at the limit, the worker's process group is killed and the folder removed. Seconds per step after the first,
with the tokens of a mean step (from the data), give the rate; the end of the first step the start-up time.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from studio.config import RunConfig
from studio.control.device_lock import DeviceLocks
from studio.control.devices import DevicePlan, plan_devices
from studio.control.launcher import worker_command
from studio.errors import StudioError
from studio.estimates.duration import Rate
from studio.paths import cache_dir
from studio.processes import process_start_time
from studio.runs.events import AttemptStarted, Event, Failed, Heartbeat, Step
from studio.runs.folder import RunFolder, RunStatus

LIMIT_S = 30.0
ENOUGH_STEP_S = 6.0  # of steps after the first (which warms up: allocations, kernel choices) ...
MIN_STEPS = 2  # ... and at least this many of them
POLL_S = 0.2
KTO_STEPS = 12  # a kto measurement's steps: its reference pass covers their examples alone


class MeasureFailed(StudioError):
    """The measurement gave no rate: no step after the first within the limit, or the worker failed."""


def measure_speed(
    config: RunConfig,
    locks: DeviceLocks,
    tokens_per_step: float,
    runs_dir: str | Path = "runs",
    limit_s: float = LIMIT_S,
    python: str = sys.executable,
) -> Rate:
    """The rate of `config` on its devices, from a short real run; DeviceBusy while a run holds them.
    `tokens_per_step`: what a mean optimizer step of the run trains on (studio.estimates.duration)."""
    from studio.control.validation import validate_run

    plan = plan_devices(config)
    if plan.nnodes > 1:
        raise StudioError("estimate.measure_one_machine")
    validate_run(config, runs_dir)
    scratch_root = cache_dir() / "speed-measurements"
    scratch_root.mkdir(parents=True, exist_ok=True)
    folder = RunFolder(tempfile.mkdtemp(prefix="measure-", dir=scratch_root))
    child: subprocess.Popen | None = None
    try:
        measured = _for_measuring(config)
        measured.save(folder.config_file)
        with locks.acquire(plan.lock_names, str(folder.path)) as record:
            folder.write_status(RunStatus(run_id=folder.run_id, state="starting", device=plan.label))
            folder.append(AttemptStarted(attempt=1))
            child = _spawn(folder, measured, plan, python)
            record(child.pid, process_start_time(child.pid))
        events = _follow(folder, child, time.time() + limit_s)
        return _rate(events, folder, limit_s, tokens_per_step)
    finally:
        if child is not None:  # whatever happened: the worker goes, and the devices are free again
            _kill(child)
            locks.release(plan.lock_names, child.pid)
        shutil.rmtree(folder.path, ignore_errors=True)


def _spawn(folder: RunFolder, config: RunConfig, plan: DevicePlan, python: str) -> subprocess.Popen:
    from studio.control.service import worker_environment

    with open(folder.log_file, "ab") as log:
        return subprocess.Popen(
            worker_command(python, str(folder.path), plan, config),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=worker_environment(plan),
            start_new_session=True,  # its own process group: killed whole, torchrun's ranks included
        )


def _for_measuring(config: RunConfig) -> RunConfig:
    """The run as planned, stepping on without end, only its first step logged, nothing evaluated, saved or
    compiled (a compilation takes about a minute: the measured rate is then the eager one, an upper bound on the
    time). The reference pass of dpo and kto, a forward over every example the run will train on before its first
    step, is left out (studio.estimates.duration counts it): dpo measures with simpo, whose steps cost the same
    without a reference, and kto with few steps, so its reference covers only those."""
    preference, steps = config.preference, 1_000_000
    if config.training.stage == "dpo" and not preference.reference_free:
        preference = preference.model_copy(update={"loss": "simpo"})
    if config.training.stage == "kto":
        steps = KTO_STEPS
    training = config.training.model_copy(
        update={
            "max_steps": steps,
            "logging_steps": 1_000_000,  # the first step alone: heartbeats follow the others
            "eval_steps": 1_000_000,
            "save_steps": 1_000_000,
            "resume_from_checkpoint": None,
            "compile": "off" if config.training.compile == "auto" else config.training.compile,
        }
    )
    return config.model_copy(update={"name": "measure-speed", "training": training, "preference": preference})


def _follow(folder: RunFolder, child: subprocess.Popen, deadline: float) -> list[Event]:
    """The scratch run's events, until the heartbeats cover enough steps, the worker ends or the deadline passes."""
    events: list[Event] = []
    offset = 0
    while time.time() < deadline and child.poll() is None:
        new, offset = folder.read_events(offset)
        events += new
        _, steps, seconds = _progress(events)
        if (steps >= MIN_STEPS and seconds >= ENOUGH_STEP_S) or any(isinstance(e, Failed) for e in new):
            return events
        time.sleep(POLL_S)
    new, _ = folder.read_events(offset)
    return events + new


def _progress(events: list[Event]) -> tuple[Step | None, int, float]:
    """(the first step's event, steps since it, seconds since it) as the latest heartbeat says."""
    first = next((e for e in events if isinstance(e, Step)), None)
    beat = next((e for e in reversed(events) if isinstance(e, Heartbeat)), None)
    if first is None or beat is None or beat.step <= first.step:
        return first, 0, 0.0
    return first, beat.step - first.step, beat.elapsed_s - first.elapsed_s


def _kill(child: subprocess.Popen) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    child.wait()


def _rate(events: list[Event], folder: RunFolder, limit_s: float, tokens_per_step: float) -> Rate:
    failed = next((e for e in events if isinstance(e, Failed)), None)
    if failed is not None:
        raise MeasureFailed("estimate.measure_failed", error=failed.error)
    first, steps, seconds = _progress(events)
    attempt = next((e for e in events if isinstance(e, AttemptStarted)), None)
    if first is None or attempt is None or steps < MIN_STEPS or seconds <= 0:
        raise MeasureFailed("estimate.measure_no_steps", seconds=round(limit_s), log=folder.log_tail(600).strip())
    per_step = seconds / steps
    return Rate(
        tokens_per_second=tokens_per_step / per_step,
        startup_s=max(0.0, first.time - attempt.time - per_step),  # up to the first step's end, less a step's time
        source="measured",
        measured_at=time.time(),
    )
