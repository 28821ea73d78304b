"""How long a run will take: the tokens it trains on over a rate measured on this machine.

The rate comes from the run folders (the newest finished run like this one: same model, method,
quantisation, stage, cutoff, batch size and devices) or from "Measure speed" (studio.estimates.measure).
Either way it is a training rate (tokens/s of the steps after the first, the median of the logged windows,
so that a window with an evaluation in it does not count), a start-up time (worker start to first step) and,
from a run, the time its evaluations took. Evaluations the rate does not cover are counted as forward passes
over the validation split, about three times as fast as training (no backward).
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from studio.config import RunConfig
from studio.errors import StudioError
from studio.estimates.data_tokens import DataTokens
from studio.locales import Message, say
from studio.runs.events import AttemptStarted, Eval, Event, Finished, Step, Watched

EVAL_SPEEDUP = 3.0  # a forward pass alone, against forward and backward
RUNS_READ = 200  # newest run folders looked at for a comparable one
RateSource = Literal["measured", "run"]


@dataclass(frozen=True)
class Rate:
    tokens_per_second: float  # training tokens/s of the steps (the first, warming up, left out)
    startup_s: float  # worker start to its first step: model, data, tokenising
    source: RateSource
    measured_at: float  # when (unix time)
    run_id: str = ""  # source "run": which run
    eval_s: float | None = None  # source "run": seconds an evaluation took (loss and watched answers)
    finish_s: float = 0.0  # source "run": last step to the end (saving)


@dataclass(frozen=True)
class TimeEstimate:
    seconds: float
    steps: int
    tokens: int  # trained on in all
    evaluations: int
    rate: Rate
    watch_unknown: bool = False  # evaluations answer watched prompts, and no run has said how long that takes

    def describe(self, now: float | None = None) -> Message:
        age = duration_text(max(0.0, (now or time.time()) - self.rate.measured_at))
        source = (
            say("estimate.rate_measured", age=age)
            if self.rate.source == "measured"
            else say("estimate.rate_from_run", run=self.rate.run_id, age=age)
        )
        return say(
            "estimate.duration",
            duration=duration_text(self.seconds),
            steps=self.steps,
            tokens=f"{self.tokens:,}",
            rate=f"{self.rate.tokens_per_second:,.0f}",
            source=source,
            unknown=say("estimate.watch_unknown") if self.watch_unknown else "",
        )


def _computes_reference(config: RunConfig) -> bool:
    """dpo (but its reference-free losses) and kto compute the reference's log-probabilities of every example
    they will train on before the first step (a forward pass each), which Measure speed leaves out."""
    stage = config.training.stage
    return stage == "kto" or (stage == "dpo" and not config.preference.reference_free)


def tokens_per_step(config: RunConfig, data: DataTokens) -> float:
    """What a mean optimizer step trains on: an epoch's tokens over its steps."""
    from studio.training.batches import StepSchedule

    return data.train_tokens / StepSchedule.of(data.train_examples, config.training).steps_per_epoch


def estimate_duration(config: RunConfig, data: DataTokens, rate: Rate, watch_s: float | None = None) -> TimeEstimate:
    """`watch_s`: what answering the watched prompts takes at each evaluation, where the rate does not say
    (`watch_seconds`; None: not known)."""
    from studio.training.batches import StepSchedule

    steps = StepSchedule.of(data.train_examples, config.training).total_steps
    tokens = round(tokens_per_step(config, data) * steps)
    evaluations = 0
    if data.val_examples:
        eval_steps = config.training.eval_steps
        evaluations = steps // eval_steps + (1 if steps % eval_steps else 0)
    one_eval = rate.eval_s
    if one_eval is None:
        one_eval = data.val_tokens / (EVAL_SPEEDUP * rate.tokens_per_second) + (watch_s or 0.0)
    seconds = rate.startup_s + tokens / rate.tokens_per_second + evaluations * one_eval + rate.finish_s
    if rate.source == "measured" and _computes_reference(config):  # a run's own start-up includes it
        examples = min(
            data.train_examples, steps * config.training.batch_size * config.training.gradient_accumulation_steps
        )
        seconds += examples * data.mean / (EVAL_SPEEDUP * rate.tokens_per_second)
    unknown = rate.eval_s is None and watch_s is None and evaluations > 0 and _watches(config)
    return TimeEstimate(seconds, steps, tokens, evaluations, rate, watch_unknown=unknown)


def rate_of(events: list[Event], source: RateSource = "run", run_id: str = "") -> Rate | None:
    """The rate a run's events show (its last attempt); None before it has logged a step after its first."""
    started = next((e.time for e in reversed(events) if isinstance(e, AttemptStarted)), None)
    attempt = [e for e in events if started is None or e.time >= started]
    steps = [e for e in attempt if isinstance(e, Step)]
    if started is None or not steps:
        return None
    rates = [step.tokens_per_second for step in steps[1:]] or [steps[0].tokens_per_second]
    if not rates or statistics.median(rates) <= 0:
        return None
    loop_start = steps[0].time - steps[0].elapsed_s
    finished = next((e for e in attempt if isinstance(e, Finished)), None)
    return Rate(
        tokens_per_second=statistics.median(rates),
        startup_s=max(0.0, loop_start - started),
        source=source,
        measured_at=steps[-1].time,
        run_id=run_id,
        eval_s=_eval_seconds(attempt) if source == "run" else None,
        finish_s=max(0.0, finished.time - steps[-1].time) if finished else 0.0,
    )


def _eval_seconds(events: list[Event]) -> float | None:
    """The mean time of the run's evaluations: from the step logged before each to its Eval event, and the
    watched answers after it."""
    took, last_step = [], None
    for event in events:
        if isinstance(event, Step):
            last_step = event
        elif isinstance(event, Eval) and last_step is not None and last_step.step == event.step:
            took.append(event.time - last_step.time)
        elif isinstance(event, Watched) and took:
            took[-1] += event.seconds
    return statistics.fmean(took) if took else None


def comparable_run(runs_dir: Path, config: RunConfig, device_kind: str, processes: int) -> Rate | None:
    """The rate of the newest finished run in `runs_dir` that trained as `config` would (see `same_setup`)."""
    from studio.runs.folder import RunFolder

    for path in _newest_runs(runs_dir):
        folder = RunFolder(path)
        try:
            status = folder.read_status()
            if status is None or status.state != "finished" or not _same_device(status.device, device_kind, processes):
                continue
            if not same_setup(folder.load_config(), config):
                continue
            rate = rate_of(folder.read_events()[0], "run", folder.run_id)
        except (OSError, ValueError, StudioError):
            continue
        if rate is not None:
            return rate
    return None


SETUP_FIELDS = (
    "model.name_or_path",
    "finetuning.method",
    "quantization.method",
    "training.stage",
    "data.cutoff_len",
    "training.batch_size",
    "training.packing",
    "training.micro_batch_tokens",
    "training.micro_batch_lanes",
    "training.gradient_checkpointing",
    "training.precision",
    "lora.rank",
)


def _watches(config: RunConfig) -> bool:
    return config.evaluation.watch_count > 0 or bool(config.evaluation.watch_prompts)


def watch_seconds(runs_dir: Path, config: RunConfig, device_kind: str) -> float | None:
    """Seconds the watched answers of one evaluation take, as the newest finished run of the same model on this
    kind of device took them (greedy decoding: about the same per new token whatever else the run did); 0 when
    nothing is watched, None when no such run watched."""
    from studio.runs.folder import RunFolder

    if not _watches(config):
        return 0.0
    for path in _newest_runs(runs_dir):
        folder = RunFolder(path)
        try:
            status, ran = folder.read_status(), folder.load_config()
            if status is None or status.state != "finished" or not (status.device or "").startswith(device_kind):
                continue
            if ran.model.name_or_path != config.model.name_or_path:
                continue
            took = [e.seconds for e in folder.read_events()[0] if isinstance(e, Watched)]
        except (OSError, ValueError, StudioError):
            continue
        if took:
            per_token = statistics.fmean(took) / ran.evaluation.watch_max_new_tokens
            return per_token * config.evaluation.watch_max_new_tokens
    return None


def _newest_runs(runs_dir: Path) -> list[Path]:
    if not runs_dir.is_dir():
        return []
    folders = (p for p in runs_dir.iterdir() if (p / "config.yaml").is_file())
    return sorted(folders, key=_modified, reverse=True)[:RUNS_READ]


def setup_key(config: RunConfig) -> tuple:
    """What decides how fast a run trains per token, beside its devices: model, method, quantisation, stage,
    cutoff, micro-batch (size, packing, tokens per forward, lanes), checkpointing, precision and adapter rank."""
    values = []
    for path in SETUP_FIELDS:
        section, name = path.split(".")
        values.append(getattr(getattr(config, section), name))
    return tuple(values)


def same_setup(ran: RunConfig, planned: RunConfig) -> bool:
    return setup_key(ran) == setup_key(planned)


def _same_device(label: str | None, kind: str, processes: int) -> bool:
    """A run's status device (cpu, cpu×2, cuda:0,1) names the same kind and number of processes."""
    if not label:
        return False
    if kind == "cpu":
        return label == ("cpu" if processes == 1 else f"cpu×{processes}")
    return label.startswith("cuda:") and len(label.removeprefix("cuda:").split(",")) == processes


def _modified(path: Path) -> float:
    try:
        return (path / "events.jsonl").stat().st_mtime
    except OSError:
        return 0.0


def duration_text(seconds: float) -> Message:
    """1 h 05 min, 12 min, 40 s in English; the units (and whether minutes are zero-padded) are each language's
    (1 小时 5 分), so the text is a Message rendered in the reader's language."""
    seconds = max(0, math.ceil(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return say("estimate.hours_minutes", hours=hours, minutes=minutes)
    if minutes >= 10 or (minutes and not secs):
        return say("estimate.minutes", minutes=minutes + (1 if secs >= 30 else 0))
    if minutes:
        return say("estimate.minutes_seconds", minutes=minutes, seconds=secs)
    return say("estimate.seconds", seconds=secs)
