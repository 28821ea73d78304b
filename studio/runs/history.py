"""A run's history folded from its events, incrementally: what charts, progress bars and logs show.

Readers keep a RunHistory and feed it only the events after their last offset, so a
watcher never re-reads a whole events file on every tick.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from studio.locales import has, say
from studio.runs.events import (
    Aborted,
    AnswerRow,
    Answers,
    AttemptStarted,
    Eval,
    Event,
    Failed,
    Finished,
    Gpu,
    Heartbeat,
    Phase,
    Preference,
    Rewards,
    Started,
    Step,
    Watched,
)
from studio.runs.text import describe

MAX_LOG_LINES = 200
PREFERENCE_METRICS = ("rewards_chosen", "rewards_rejected", "reward_margin", "reward_accuracy", "kl")
REWARD_METRICS = ("reward_mean", "reward_std", "kl", "completion_length", "flat_groups", "clip_fraction", "value_loss")
FUNCTION = "function:"  # a reward function's series in `rewards`: function:NAME


@dataclass
class Series:
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)

    def add(self, x: float, y: float) -> None:
        self.x.append(x)
        self.y.append(y)

    def keep_until(self, x: float) -> None:
        """Drop the points after `x`: a resumed attempt replays the steps after its checkpoint."""
        kept = sum(1 for value in self.x if value <= x)
        del self.x[kept:], self.y[kept:]


@dataclass
class RunHistory:
    run_id: str
    offset: int = 0
    loss: Series = field(default_factory=Series)
    eval_loss: Series = field(default_factory=Series)
    learning_rate: Series = field(default_factory=Series)
    rss_mib: Series = field(default_factory=Series)  # x: seconds since the first event
    gpu_used_mib: dict[int, Series] = field(default_factory=dict)
    gpu_total_mib: dict[int, float] = field(default_factory=dict)
    gpu_names: dict[int, str] = field(default_factory=dict)
    # DPO/KTO: split ("train", "eval") -> metric (PREFERENCE_METRICS) -> its series over steps
    preference: dict[str, dict[str, Series]] = field(default_factory=dict)
    # PPO/GRPO: split -> metric (REWARD_METRICS, and FUNCTION + each reward function's name) -> its series
    rewards: dict[str, dict[str, Series]] = field(default_factory=dict)
    answers: list[AnswerRow] = field(default_factory=list)  # the latest answers sampled, with their rewards
    answers_step: int | None = None
    watched: list[Watched] = field(default_factory=list)  # the watched prompts' answers, evaluation by evaluation
    stage: str = "sft"
    step: int = 0
    total_steps: int | None = None
    elapsed_s: float = 0.0
    eta_s: float | None = None
    tokens_per_second: float | None = None
    method: str = ""  # a Message once the run has started (the app shows it in the reader's language)
    device: str = ""
    phase: str = ""
    outcome: str | None = None  # finished | failed | aborted for the latest attempt
    error: str | None = None
    log: list[str] = field(default_factory=list)
    resumed_at: list[int] = field(default_factory=list)  # steps where a resumed attempt took over
    attempt_started_at: float | None = None  # wall time the latest attempt began (Start or Resume pressed)
    last_event_at: float | None = None
    eta_at: float | None = None  # when eta_s was estimated
    _t0: float | None = None

    def update(self, events: list[Event], new_offset: int) -> RunHistory:
        for event in events:
            self._apply(event)
        self.offset = new_offset
        return self

    @property
    def has_preference(self) -> bool:
        return bool(self.preference) or self.stage in ("dpo", "kto", "rm")

    @property
    def has_rewards(self) -> bool:
        return bool(self.rewards) or self.stage in ("ppo", "grpo")

    @property
    def fraction_done(self) -> float:
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0

    def elapsed_now(self, live: bool) -> float | None:
        """Seconds since the latest attempt began: still counting while it is live, frozen at its last event after."""
        if self.attempt_started_at is None:
            return self.elapsed_s or None
        end = time.time() if live else (self.last_event_at or self.attempt_started_at)
        return max(0.0, end - self.attempt_started_at)

    def eta_now(self, live: bool) -> float | None:
        if self.eta_s is None or self.eta_at is None:
            return None
        return max(0.0, self.eta_s - (time.time() - self.eta_at)) if live else self.eta_s

    def _since_start(self, event: Event) -> float:
        """Seconds from the run's first event to `event` (the x of the memory charts)."""
        return round(event.time - (self._t0 if self._t0 is not None else event.time), 2)

    def _apply(self, event: Event) -> None:
        self._t0 = self._t0 if self._t0 is not None else event.time
        self.last_event_at = event.time
        match event:
            case AttemptStarted():
                self._on_attempt(event)
            case Phase():
                self.phase = event.name
            case Started():
                self._on_started(event)
            case Step():
                self._on_step(event)
            case Heartbeat():
                self.step, self.total_steps = event.step, event.total_steps
                self.elapsed_s, self.eta_s, self.eta_at = event.elapsed_s, event.eta_s, event.time
            case Eval():
                self.eval_loss.add(event.step, event.eval_loss)
            case Preference():
                self._on_preference(event)
            case Rewards():
                self._on_rewards(event)
            case Answers():
                self.answers, self.answers_step = event.rows, event.step
            case Watched():
                # a resumed attempt evaluates again from its checkpoint: its answers replace the later ones
                self.watched = [w for w in self.watched if w.step < event.step] + [event]
            case Gpu():
                self._on_gpu(event)
            case Finished():
                self.outcome, self.step, self.eta_s = "finished", event.step, 0.0
            case Failed():
                self.outcome, self.error = "failed", event.error
            case Aborted():
                self.outcome = "aborted"
        line = _log_line(event)
        if line:
            self.log = (self.log + [line])[-MAX_LOG_LINES:]

    def _on_attempt(self, event: AttemptStarted) -> None:
        self.outcome, self.error, self.phase = None, None, ""
        self.attempt_started_at, self.eta_s, self.eta_at = event.time, None, None
        if event.attempt > 1:  # the resumed attempt replays the steps after its checkpoint
            kept = [self.loss, self.eval_loss, self.learning_rate]
            kept += [series for split in self.preference.values() for series in split.values()]
            kept += [series for split in self.rewards.values() for series in split.values()]
            for series in kept:
                series.keep_until(event.start_step)
            self.resumed_at.append(event.start_step)
            self.step = event.start_step

    def _on_started(self, event: Started) -> None:
        self.total_steps, self.device = event.total_steps, event.device
        if event.method_key and has(event.method_key):
            self.method = say(event.method_key, **event.method_args)
        else:  # a folder written before the table: its two texts as written (before Chinese, only English)
            self.method = say("runs.recorded_method", en=event.method, zh=event.method_zh or event.method)
        self.step, self.stage = event.start_step, event.stage

    def _on_step(self, event: Step) -> None:
        self.loss.add(event.step, event.loss)
        self.learning_rate.add(event.step, event.learning_rate)
        self.rss_mib.add(self._since_start(event), event.rss_mib)
        self.step, self.total_steps = event.step, event.total_steps
        self.elapsed_s, self.eta_s, self.tokens_per_second = event.elapsed_s, event.eta_s, event.tokens_per_second
        self.eta_at = event.time

    def _on_preference(self, event: Preference) -> None:
        split = self.preference.setdefault(event.split, {})
        for name in PREFERENCE_METRICS:
            value = getattr(event, name)
            if value is not None:
                split.setdefault(name, Series()).add(event.step, value)

    def _on_rewards(self, event: Rewards) -> None:
        split = self.rewards.setdefault(event.split, {})
        for name in REWARD_METRICS:
            value = getattr(event, name)
            if value is not None:
                split.setdefault(name, Series()).add(event.step, value)
        for name, value in event.functions.items():
            split.setdefault(FUNCTION + name, Series()).add(event.step, value)

    def _on_gpu(self, event: Gpu) -> None:
        for reading in event.gpus:
            self.gpu_used_mib.setdefault(reading.index, Series()).add(self._since_start(event), reading.used_mib)
            self.gpu_total_mib[reading.index] = reading.total_mib
            self.gpu_names[reading.index] = reading.name


def _log_line(event: Event) -> str | None:
    line = describe(event)
    if line and isinstance(event, Failed):
        return line.splitlines()[0]
    return line


def smooth(values: list[float], weight: float = 0.8) -> list[float]:
    """Exponential moving average with bias correction, as TensorBoard draws smoothed curves."""
    smoothed, average = [], 0.0
    for index, value in enumerate(values, start=1):
        average = weight * average + (1 - weight) * value
        smoothed.append(average / (1 - weight**index))
    return smoothed


class HistoryCache:
    """One folded history per run, shared by every page that watches it.

    Twenty open pages polling a run read its new events once, not twenty times; each caller gets
    a snapshot that never changes under it (a new one whenever events arrive).
    """

    def __init__(self, read_events: Callable[[str, int], tuple[list[Event], int]], capacity: int = 32):
        self._read_events = read_events  # (run_id, offset) -> (events, new offset)
        self._capacity = capacity
        self._working: dict[str, RunHistory] = {}
        self._snapshots: dict[str, RunHistory] = {}
        self._lock = threading.Lock()

    def get(self, run_id: str) -> RunHistory:
        import copy

        with self._lock:
            working = self._working.pop(run_id, None) or RunHistory(run_id)
            self._working[run_id] = working  # most recently used last
            events, offset = self._read_events(run_id, working.offset)
            if events or run_id not in self._snapshots:
                working.update(events, offset)
                self._snapshots[run_id] = copy.deepcopy(working)
            while len(self._working) > self._capacity:
                oldest = next(iter(self._working))
                del self._working[oldest]
                self._snapshots.pop(oldest, None)
            return self._snapshots[run_id]

    def forget(self, run_id: str) -> None:
        with self._lock:
            self._working.pop(run_id, None)
            self._snapshots.pop(run_id, None)
