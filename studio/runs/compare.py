"""Runs side by side: one table row and one set of curves per run, read from the run folders alone.

    comparison = compare_runs(runs_dir, ["a-20250101-1200", "b-20250101-1300"], status_of)

A row holds what tells runs apart: state, model, datasets, the config fields whose values differ
between the chosen runs, best eval loss and its step, the newest evaluation of the run's adapter,
duration, tokens/s and peak memory. Curves are the train and eval loss, plus any other number a
step or eval event carries (preference stages add reward margin and accuracy), with the tokens
seen by each step for a tokens x-axis. A run whose folder is missing or damaged still gets a row
that says why; it never takes the others down.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from studio.errors import StudioError
from studio.runs.events import AttemptStarted, Eval, Event, Failed, Gpu, Preference, Rewards, Step, Watched
from studio.runs.folder import RUN_ID, RunFolder, RunStatus
from studio.runs.history import Series

# The sections that shape training; evaluation, generation and export settings do not tell runs apart.
COMPARED_SECTIONS = ("model", "quantization", "lora", "data", "training", "preference", "ppo", "grpo", "rewards")
_OWN_COLUMNS = {"model.name_or_path", "data.datasets"}  # shown as the model and datasets columns already
# A preference stage's numbers (Preference events) and the reward of a ppo/grpo run's answers (Rewards events), as
# curves and as the table's last-known values.
PREFERENCE_METRICS = ("reward_accuracy", "reward_margin")
REWARD_METRICS = ("reward_mean", "kl")
_STEP_BOOKKEEPING = {
    "type",
    "time",
    "step",
    "total_steps",
    "epoch",
    "loss",
    "learning_rate",
    "grad_norm",
    "tokens_per_second",
    "elapsed_s",
    "eta_s",
    "rss_mib",
}
_EVAL_BOOKKEEPING = {"type", "time", "step", "epoch", "eval_loss", "best_eval_loss", "patience_left"}


@dataclass
class RunCurves:
    run_id: str
    series: dict[str, Series] = field(default_factory=dict)  # "loss", "eval_loss", then any extra metric by name
    tokens_at: dict[int, float] = field(default_factory=dict)  # step -> tokens trained on up to that step

    def tokens(self, steps: list[float]) -> list[float | None]:
        """Tokens seen by each step, interpolated between logged steps (an eval step need not be one)."""
        import bisect

        known = sorted(self.tokens_at.items())
        xs = [s for s, _ in known]
        out: list[float | None] = []
        for step in steps:
            index = bisect.bisect_left(xs, step)
            if index < len(xs) and xs[index] == step:
                out.append(known[index][1])
            elif 0 < index < len(xs):
                (s0, t0), (s1, t1) = known[index - 1], known[index]
                out.append(t0 + (t1 - t0) * (step - s0) / (s1 - s0))
            else:  # before the first logged step or after the last: unknown
                out.append(None)
        return out


@dataclass
class CompareRow:
    run_id: str
    state: str
    model: str = ""
    datasets: str = ""
    differing: dict[str, str] = field(default_factory=dict)  # config path -> value, only fields that differ
    best_eval_loss: float | None = None
    best_eval_step: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # the newest evaluation of the run's adapter
    duration_s: float | None = None
    tokens_per_second: float | None = None
    peak_memory_mib: float | None = None
    memory_kind: str = ""  # "GPU" (nvidia-smi) or "RSS" (the worker process)
    preference: dict[str, float] = field(default_factory=dict)  # the latest reward accuracy/margin/mean, eval_ or train
    adapter: str | None = None  # the adapter folder (a full or freeze run's model folder), for Chat and Evaluate
    problem: str = ""  # why the run failed, or why its folder could not be read
    watched: Watched | None = None  # the watched prompts' answers at the run's latest evaluation


@dataclass
class Comparison:
    rows: list[CompareRow]
    curves: list[RunCurves]
    differing_fields: list[str]

    def watched(self) -> list[tuple[str, list[str]]]:
        """(prompt, each run's answer to it at its latest evaluation, "–" where a run did not watch it): the
        watched prompts side by side, prompts in the order the runs first name them."""
        prompts = list(dict.fromkeys(row.prompt for r in self.rows if r.watched for row in r.watched.rows))
        answers = [{row.prompt: row.answer for row in r.watched.rows} if r.watched else {} for r in self.rows]
        return [(prompt, [found.get(prompt, "–") for found in answers]) for prompt in prompts]

    def table(self) -> list[tuple[str, list[str]]]:
        """The comparison as text columns, (column id, one cell per run): the page labels the ids, the CLI prints them.

        Ids: run, state, model, datasets, each differing config path, best_eval, the evaluation metrics, duration,
        tokens_per_second, peak_memory, problem (only when some run has one).
        """
        from studio.runs.text import format_duration

        rows = self.rows
        columns = [
            ("run", [r.run_id for r in rows]),
            ("state", [r.state for r in rows]),
            ("model", [_short_model(r.model) for r in rows]),
            ("datasets", [r.datasets or "–" for r in rows]),
        ]
        columns += [(path, [r.differing.get(path, "–") for r in rows]) for path in self.differing_fields]
        columns.append(
            (
                "best_eval",
                [f"{r.best_eval_loss:.4f} @ {r.best_eval_step}" if r.best_eval_loss is not None else "–" for r in rows],
            )
        )
        if any(
            name in r.preference
            for r in rows
            for name in (*PREFERENCE_METRICS, *(f"eval_{n}" for n in PREFERENCE_METRICS))
        ):
            columns += [
                (f"training_{name}", [_preference_cell(r.preference, name) for r in rows])
                for name in PREFERENCE_METRICS
            ]
        if any("reward_mean" in r.preference or "eval_reward_mean" in r.preference for r in rows):
            columns.append(("training_reward_mean", [_preference_cell(r.preference, "reward_mean") for r in rows]))
        metric_names = list(dict.fromkeys(n for r in rows for n in r.metrics if n not in ("eval_loss", "perplexity")))
        columns += [
            (name, [f"{r.metrics[name]:.2f}" if name in r.metrics else "–" for r in rows]) for name in metric_names
        ]
        columns += [
            ("duration", [format_duration(r.duration_s, "–") for r in rows]),
            ("tokens_per_second", [f"{r.tokens_per_second:.1f}" if r.tokens_per_second else "–" for r in rows]),
            (
                "peak_memory",
                [f"{r.peak_memory_mib:.0f} MiB ({r.memory_kind})" if r.peak_memory_mib else "–" for r in rows],
            ),
        ]
        if any(r.problem for r in rows):
            columns.append(("problem", [r.problem or "" for r in rows]))
        return columns


def compare_runs(
    runs_dir: str | Path, run_ids: list[str], status_of: Callable[[str], RunStatus] | None = None
) -> Comparison:
    """`status_of(run_id)` gives a RunStatus (the service's, which notices dead workers); else status.json is read."""
    rows, curves, configs = [], [], {}
    for run_id in dict.fromkeys(run_ids):
        if not RUN_ID.match(str(run_id)):  # a name, never a path: the page sends these
            rows.append(CompareRow(str(run_id), "missing", problem="not a run name"))
            curves.append(RunCurves(str(run_id)))
            continue
        folder = RunFolder(Path(runs_dir) / run_id)
        row, run_curves = CompareRow(run_id, _state(folder, status_of)), RunCurves(run_id)
        try:
            configs[run_id] = _describe_config(folder, row)
            _fold_events(folder.read_events()[0], row, run_curves)
            row.metrics = latest_metrics(folder.path)
        except (StudioError, OSError, ValueError) as error:
            row.problem = row.problem or str(error).splitlines()[0]
        row.adapter = _result_of(folder)
        rows.append(row)
        curves.append(run_curves)
    differing = differing_fields(configs)
    for row in rows:
        if row.run_id in configs:
            row.differing = {path: configs[row.run_id].get(path, "–") for path in differing}
    return Comparison(rows, curves, differing)


def _result_of(folder: RunFolder) -> str | None:
    """The run's adapter folder, or a full or freeze run's model folder (both open in Chat and Evaluate)."""
    if (folder.adapter_dir / "adapter_config.json").is_file():
        return str(folder.adapter_dir)
    return str(folder.model_dir) if (folder.model_dir / "config.json").is_file() else None


def _preference_cell(values: dict[str, float], name: str) -> str:
    """The held-out value when the run was evaluated, else the last training one; which is said."""
    split, value = ("eval", values.get(f"eval_{name}")) if f"eval_{name}" in values else ("train", values.get(name))
    if value is None:
        return "–"
    shown = f"{value:.0%}" if name == "reward_accuracy" else f"{value:+.3f}"  # a margin or a mean reward
    return f"{shown} ({split})"


def _short_model(name: str) -> str:
    """A hub id as it is; a local model folder by its own name (its full path is in the run's config.yaml)."""
    if not name:
        return "–"
    return Path(name).name if name.startswith(("/", ".", "~")) else name


def _state(folder: RunFolder, status_of: Callable[[str], RunStatus] | None) -> str:
    if not folder.path.is_dir():
        return "missing"
    try:
        status = status_of(folder.run_id) if status_of else folder.read_status()
    except StudioError:
        return "unreadable"
    return status.state if status is not None else "unreadable"


def _describe_config(folder: RunFolder, row: CompareRow) -> dict[str, str]:
    config = folder.load_config()  # ConfigError (a StudioError) when damaged
    row.model, row.datasets = config.model.name_or_path, ", ".join(config.data.datasets)
    values = config.model_dump(mode="json", include=set(COMPARED_SECTIONS))
    return {
        f"{section}.{name}": _shown(value) for section in COMPARED_SECTIONS for name, value in values[section].items()
    }


def _shown(value: object) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else "–" if value is None else str(value)


def differing_fields(configs: dict[str, dict[str, str]]) -> list[str]:
    """Config paths whose values are not the same in every readable config (in section order)."""
    if len(configs) < 2:
        return []
    paths = list(dict.fromkeys(path for values in configs.values() for path in values))
    return [
        path
        for path in paths
        if path not in _OWN_COLUMNS and len({values.get(path) for values in configs.values()}) > 1
    ]


def _fold_events(events: list[Event], row: CompareRow, curves: RunCurves) -> None:
    """The run's curves and numbers; a resumed attempt replaces the steps after its checkpoint, as on the chart."""
    windows: dict[int, float] = {}  # step -> tokens trained since the previous logged step
    attempts: list[list[float]] = []  # per attempt: [started at, last event at, last step's elapsed_s]
    gpu_peak, rss_peak = None, None
    for event in events:
        if not attempts and not isinstance(event, AttemptStarted):  # a run from before attempts were recorded
            attempts.append([event.time, event.time, 0.0])
        if attempts:
            attempts[-1][1] = event.time
        match event:
            case AttemptStarted():
                attempts.append([event.time, event.time, 0.0])
                row.problem = ""
                if event.attempt > 1:
                    for series in curves.series.values():
                        series.keep_until(event.start_step)
                    windows = {s: t for s, t in windows.items() if s <= event.start_step}
            case Step():
                previous = attempts[-1][2] if attempts else 0.0
                windows[event.step] = event.tokens_per_second * max(0.0, event.elapsed_s - previous)
                if attempts:
                    attempts[-1][2] = event.elapsed_s
                rss_peak = max(rss_peak or 0.0, event.rss_mib)
                _add(curves, "loss", event.step, event.loss)
                _add_extras(curves, event, _STEP_BOOKKEEPING, "")
            case Watched():
                row.watched = event
            case Eval():
                _add(curves, "eval_loss", event.step, event.eval_loss)
                _add_extras(curves, event, _EVAL_BOOKKEEPING, "eval_")
            case Preference():
                prefix = "eval_" if event.split == "eval" else ""
                for name in PREFERENCE_METRICS:
                    _add(curves, prefix + name, event.step, getattr(event, name))
            case Rewards():
                prefix = "eval_" if event.split == "eval" else ""
                for name in REWARD_METRICS:
                    if (value := getattr(event, name)) is not None:
                        _add(curves, prefix + name, event.step, value)
            case Gpu():
                gpu_peak = max([gpu_peak or 0.0, *(reading.used_mib for reading in event.gpus)])
            case Failed():
                row.problem = event.error.strip().splitlines()[0] if event.error.strip() else ""
    _summarise(row, curves, windows, attempts, gpu_peak, rss_peak)


def _add(curves: RunCurves, name: str, step: int, value: float) -> None:
    curves.series.setdefault(name, Series()).add(step, value)


def _add_extras(curves: RunCurves, event: Step | Eval, bookkeeping: set[str], prefix: str) -> None:
    """Numbers an event type carries beyond the ones every run has (e.g. a preference stage's reward margin)."""
    for name, value in event.model_dump().items():
        if name not in bookkeeping and isinstance(value, (int, float)) and not isinstance(value, bool):
            _add(curves, name if name.startswith(prefix) else prefix + name, event.step, float(value))


def _summarise(
    row: CompareRow,
    curves: RunCurves,
    windows: dict[int, float],
    attempts: list[list[float]],
    gpu_peak: float | None,
    rss_peak: float | None,
) -> None:
    total = 0.0
    for step in sorted(windows):
        total += windows[step]
        curves.tokens_at[step] = round(total)
    for name in (
        *PREFERENCE_METRICS,
        *(f"eval_{name}" for name in PREFERENCE_METRICS),
        "reward_mean",
        "eval_reward_mean",
    ):
        if (series := curves.series.get(name)) and series.y:  # the latest, after a resume cut the curves
            row.preference[name] = series.y[-1]
    evals = curves.series.get("eval_loss")
    if evals and evals.y:
        best = min(range(len(evals.y)), key=evals.y.__getitem__)
        row.best_eval_loss, row.best_eval_step = evals.y[best], int(evals.x[best])
    if attempts:
        row.duration_s = round(sum(end - start for start, end, _ in attempts), 1)
        trained_s = sum(elapsed for _, _, elapsed in attempts)
        row.tokens_per_second = round(total / trained_s, 1) if trained_s > 0 and total else None
    row.peak_memory_mib, row.memory_kind = (
        (gpu_peak, "GPU") if gpu_peak is not None else (rss_peak, "RSS" if rss_peak else "")
    )


def latest_metrics(run_dir: Path) -> dict[str, float]:
    """BLEU-4, ROUGE and eval loss of the run's adapter in its newest evaluation (evaluations/STAMP/metrics.json)."""
    for file in sorted(Path(run_dir).glob("evaluations/*/metrics.json"), reverse=True):
        try:
            columns = json.loads(file.read_text(encoding="utf-8"))["metrics"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a damaged or unfinished evaluation: the one before it still counts
        adapters = [name for name in columns if name != "base"]
        if adapters:
            return {name: float(value) for name, value in columns[adapters[-1]].items()}
    return {}
