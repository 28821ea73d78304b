"""The worker's events, relayed to the trackers of `logging.report_to` (rank 0 only).

A RunFolder listener: it hears each event just before the event is written, so what it has to say about the
trackers (where they write, that one failed) lands in events.jsonl before the run's terminal event. Trackers
start when training starts (the `started` event: the run's facts are known, loading is done), receive each event's
metrics at its step, and at the end the adapter and a finish. A tracker that raises is said once, as a warning,
and not called again: training never waits on a broken tracker a second time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from studio.config import RunConfig
from studio.runs.events import Aborted, Event, Failed, Finished, Gpu, Started
from studio.tracking.base import TrackedRun, Tracker
from studio.tracking.metrics import metrics_of
from studio.tracking.registry import TRACKERS

Note = Callable[[Literal["info", "warning"], str], None]


class Relay:
    def __init__(self, folder: Path, config: RunConfig, note: Note):
        self.folder, self.config, self.note = Path(folder), config, note
        self.trackers: dict[str, Tracker] = {}
        self.step = 0  # where an event without a step of its own (gpu) is logged: the latest step
        self._started = False
        self._gpu_step: int | None = None
        self._lock = threading.Lock()  # the GPU sampler's thread appends events too
        self._notes: list[tuple[Literal["info", "warning"], str]] = []

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._relay(event)
            notes, self._notes = self._notes, []
        for level, message in notes:  # appended as events, which come back here: outside the lock
            self.note(level, message)

    def close(self) -> None:
        """Finish the trackers a run left open (its worker ended without a terminal event of its own)."""
        with self._lock:
            self._finish(ok=False)

    def _relay(self, event: Event) -> None:
        if isinstance(event, Started) and not self._started:
            self._start(event)
        if not self.trackers:
            return
        self.step = getattr(event, "step", self.step)
        if isinstance(event, Gpu):  # sampled every few seconds: one reading per step is what a chart can show
            if self._gpu_step == self.step:
                return
            self._gpu_step = self.step
        metrics = metrics_of(event)
        if metrics:
            self._each("log", lambda tracker: tracker.log(metrics, self.step))
        if isinstance(event, Finished):
            self._artifact(Path(event.adapter_dir))
            self._finish(ok=True)
        elif isinstance(event, (Failed, Aborted)):
            self._finish(ok=False)

    def _start(self, event: Started) -> None:
        self._started, self.step = True, event.start_step
        facts = event.model_dump(exclude={"type", "time", "pid", "attempt", "method_zh", "method_args"})
        run = TrackedRun(self.folder, self.config.logging, self.config.model_dump(mode="json"), facts)
        for name in self.config.logging.report_to:
            try:
                tracker = TRACKERS[name].load()(run)
            except Exception as error:  # a package missing or broken since Start, a store that cannot be opened
                self._notes.append(("warning", _not_started(name, error)))
                continue
            self.trackers[name] = tracker
            self._notes.append(("info", f"{tracker.title} receives this run's metrics: {tracker.where()}"))

    def _artifact(self, result: Path) -> None:
        """The adapter, kept by the trackers that keep files; a full or freeze run's whole model is left where it
        is (copying gigabytes into a tracker's store is a choice to make by hand)."""
        if result.name == "adapter" and result.is_dir():
            name = f"{self.folder.name}-adapter"
            self._each("log_artifact", lambda tracker: tracker.log_artifact(result, name), only_artifacts=True)

    def _finish(self, ok: bool) -> None:
        self._each("finish", lambda tracker: tracker.finish(ok))
        self.trackers.clear()

    def _each(self, what: str, call: Callable[[Tracker], None], only_artifacts: bool = False) -> None:
        for name, tracker in list(self.trackers.items()):
            if only_artifacts and not tracker.artifacts:
                continue
            try:
                call(tracker)
            except Exception as error:  # whatever a tracker raises, training goes on without it
                del self.trackers[name]
                self._notes.append(("warning", _failed(tracker.title, what, error)))


def _not_started(name: str, error: Exception) -> str:
    hint = f" (pip install 'qlora-studio[{name}]')" if isinstance(error, ImportError) else ""
    return f"{name} could not start{hint}: {type(error).__name__}: {_short(error)}. Training goes on without it."


def _failed(title: str, what: str, error: Exception) -> str:
    return (
        f"{title} failed ({what}: {type(error).__name__}: {_short(error)}) and receives nothing more from this run; "
        "training goes on, and events.jsonl has every metric."
    )


def _short(error: Exception) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 300 else text[:297] + "..."
