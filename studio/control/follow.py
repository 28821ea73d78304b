"""Following a run from a terminal: one line per event, Ctrl-C asks the run to checkpoint and stop."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from studio.runs.events import (
    TERMINAL,
    AttemptStarted,
)
from studio.runs.folder import ENDED_STATES
from studio.runs.text import describe

if TYPE_CHECKING:
    from studio.control.service import TrainingService


def follow_run(
    service: TrainingService,
    run_id: str,
    poll_s: float = 0.5,
    out: Callable[[str], None] = print,
    interrupts: Callable[[], int] = lambda: 0,
    stopping: bool = False,
) -> int:
    """Print the run's events until its attempt ends; exit code 0 only when it finished.

    The status decides when the run has ended, so a run whose folder could no longer take its
    last event (disk full) still ends here, with the reason the service worked out.
    The first Ctrl-C (a KeyboardInterrupt, or a press that `interrupts()` counts at each poll) asks the run to
    checkpoint and stop, unless `stopping` says that was asked already; the next one stops watching.
    """
    offset, ended_by_event = 0, False
    while True:
        try:
            for _ in range(interrupts()):
                stopping = ask_to_stop(service, run_id, stopping, out)
            events, offset = service.read_events(run_id, offset)
            for event in events:
                ended_by_event = isinstance(event, TERMINAL) or (
                    ended_by_event and not isinstance(event, AttemptStarted)
                )
                line = describe(event)
                if line:
                    out(line)
            status = service.settle(run_id)  # a worker that died unseen has its end recorded
            if status.state in ENDED_STATES and not service.read_events(run_id, offset)[0]:
                if not ended_by_event:
                    out(f"[{status.state}] {status.message}")
                return 0 if status.state == "finished" else 1
            time.sleep(poll_s)
        except KeyboardInterrupt:
            stopping = ask_to_stop(service, run_id, stopping, out)


def ask_to_stop(service: TrainingService, run_id: str, stopping: bool, out: Callable[[str], None] = print) -> bool:
    """A Ctrl-C while a run is followed: the first asks the run to stop; a later one stops watching (it raises)."""
    if stopping:
        raise KeyboardInterrupt
    out("Asking the run to save a checkpoint and stop (Ctrl-C again to stop watching)...")
    service.abort(run_id)
    return True
