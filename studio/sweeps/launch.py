"""A planned sweep queued through the training service, and cancelled.

Each run goes through `TrainingService.start(config, queue=True)` like any queued run: the first starts when its
devices are free, the others wait in the queue, oldest first, and the one-run-per-device rule holds. Every run is
checked before the first is queued, so a sweep is queued whole or not at all.

Cancelling a sweep takes its queued runs out of the queue. The run already training goes on unless the caller asks
to stop it too (it then checkpoints and stops, as Abort does): its result may be worth keeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from studio.config import RunConfig
from studio.control.service import TrainingService
from studio.control.validation import validate_run
from studio.errors import StudioError
from studio.locales import Message, say
from studio.runs.folder import FINAL_STATES
from studio.sweeps.plan import SweepPlan
from studio.sweeps.record import SweepInfo, SweepMark, new_sweep_id, write_mark
from studio.sweeps.spec import SweepError

_LAUNCHING = threading.Lock()


def start_sweep(
    service: TrainingService, plan: SweepPlan, check: Callable[[RunConfig], None] = lambda config: None
) -> str:
    """Queue every run of `plan` in order; returns the sweep id. `check(config)`: the caller's own refusal of a
    config (the web server's workspace rules), applied to every run before any is queued."""
    for run in plan.runs:  # what start() would refuse, found before the first run is queued
        try:
            check(run.config)
            validate_run(run.config, service.runs_dir)
        except StudioError as error:
            raise SweepError("sweeps.run_cannot_start", run=run.name, error=error) from None
    with _LAUNCHING:  # two sweeps queued at once from one server never get the same id
        return _queue_all(service, plan)


def _queue_all(service: TrainingService, plan: SweepPlan) -> str:
    sweep_id = new_sweep_id(service.runs_dir, plan.prefix)
    created, spec = time.time(), plan.spec
    started: list[str] = []
    try:
        for run in plan.runs:
            mark = SweepMark(
                sweep_id=sweep_id,
                index=run.index,
                total=len(plan.runs),
                axes=plan.axes,
                varied=run.varied,
                mode=spec.mode,
                metric=spec.metric,
                created=created,
            )
            started.append(service.start(run.config, queue=True, on_created=_marker(service, mark)))
    except BaseException:  # half a sweep is no sweep: what was queued leaves the queue, what started stops
        _stop(service, started, abort_running=True)
        raise
    return sweep_id


def _marker(service: TrainingService, mark: SweepMark) -> Callable[[str], None]:
    """Writes the run's sweep mark once its folder exists, before its worker starts."""
    return lambda run_id: write_mark(service.runs_dir / run_id, mark)


@dataclass
class SweepCancel:
    cancelled: list[str] = field(default_factory=list)  # left the queue without starting
    stopping: list[str] = field(default_factory=list)  # training, asked to checkpoint and stop
    running: list[str] = field(default_factory=list)  # training, left to finish

    @property
    def message(self) -> Message:
        if self.running:
            runs = ", ".join(self.running)
            return say("sweeps.cancelled_running_left", cancelled=len(self.cancelled), runs=runs)
        if self.stopping:
            runs = ", ".join(self.stopping)
            return say("sweeps.cancelled_and_stopping", cancelled=len(self.cancelled), runs=runs)
        return say("sweeps.cancelled", cancelled=len(self.cancelled))


def cancel_sweep(service: TrainingService, info: SweepInfo, abort_running: bool = False) -> SweepCancel:
    """Every queued run of the sweep leaves the queue; a training one is stopped only with `abort_running`."""
    return _stop(service, info.runs, abort_running)


def _stop(service: TrainingService, run_ids: list[str], abort_running: bool) -> SweepCancel:
    outcome = SweepCancel()
    for run_id in run_ids:  # oldest first: the queue starts the oldest next, so it is the first taken out
        if not service.exists(run_id):
            continue
        if service.cancel_queued(run_id):
            outcome.cancelled.append(run_id)
            continue
        state = service.settle(run_id).state
        if state in FINAL_STATES or state == "unreadable":
            continue
        if not abort_running:
            outcome.running.append(run_id)
        elif service.abort(run_id) == "stopping":  # else it ended meanwhile
            outcome.stopping.append(run_id)
    return outcome
