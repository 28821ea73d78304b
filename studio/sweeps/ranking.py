"""A sweep's runs ranked by one metric, read from their folders through the comparison Compare shows.

Metrics: the best eval loss of training (the default), the final train loss, a preference or reinforcement stage's
reward numbers, and the newest evaluation of a run's adapter (BLEU-4, ROUGE, eval loss, perplexity) where it has
one. Losses, perplexity and KL rank lowest first, everything else highest first. A run without the metric ranks
after every run with it, in the sweep's order, and says why (queued, still training, failed, never evaluated).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from studio.locales import Message, say
from studio.runs.compare import CompareRow, Comparison, RunCurves
from studio.sweeps.record import SweepInfo

TRAINING_METRICS = ("best_eval_loss", "final_train_loss")
EVALUATION_METRICS = ("bleu-4", "rouge-1", "rouge-2", "rouge-l", "eval_loss", "perplexity")  # Evaluate's metrics.json
_LOWER_IS_BETTER = re.compile(r"(loss|perplexity|^(eval_)?kl)$")
_UNRANKED_NOTES = {"queued": "sweeps.note_queued", "starting": "sweeps.note_running", "running": "sweeps.note_running"}


def lower_is_better(metric: str) -> bool:
    return bool(_LOWER_IS_BETTER.search(metric))


def run_metrics(row: CompareRow, curves: RunCurves) -> dict[str, float]:
    """Every number a run can be ranked by, by name."""
    values: dict[str, float] = {}
    if row.best_eval_loss is not None:
        values["best_eval_loss"] = row.best_eval_loss
    loss = curves.series.get("loss")
    if loss is not None and loss.y:
        values["final_train_loss"] = loss.y[-1]
    values.update(row.preference)  # reward accuracy and margin, mean reward: train and eval_
    values.update(row.metrics)  # the adapter's newest evaluation
    return values


@dataclass
class RankedRun:
    run_id: str
    state: str
    varied: dict[str, str]
    value: float | None  # the metric; None when the run has none (yet)
    rank: int | None  # 1 is best; None without the metric
    note: Message | str = ""  # why a run is not ranked


@dataclass
class SweepRanking:
    sweep: SweepInfo
    metric: str
    runs: list[RankedRun]  # best first, then the unranked in the sweep's order
    comparison: Comparison  # its rows and curves in the same order (Compare's charts overlay them)
    metrics: list[str]  # what the sweep's runs can be ranked by, the training metrics first

    @property
    def lower_is_better(self) -> bool:
        return lower_is_better(self.metric)

    @property
    def live(self) -> bool:
        """Some run has not ended: the ranking will still change."""
        return any(run.state in ("queued", "starting", "running") for run in self.runs)

    @property
    def best(self) -> RankedRun | None:
        return self.runs[0] if self.runs and self.runs[0].rank == 1 else None

    def table(self) -> list[tuple[str, list[str]]]:
        """(column id, one cell per run): rank, run, state, each varied field, the metric, and why a run is not
        ranked (only when one is not)."""
        runs = self.runs
        columns = [
            ("rank", [str(run.rank) if run.rank else "–" for run in runs]),
            ("run", [run.run_id for run in runs]),
            ("state", [run.state for run in runs]),
        ]
        columns += [(path, [run.varied.get(path, "–") for run in runs]) for path in self.sweep.axes]
        columns.append((self.metric, [f"{run.value:.4f}" if run.value is not None else "–" for run in runs]))
        if any(run.note for run in runs):  # Messages: said in each reader's language
            columns.append(("note", [run.note for run in runs]))
        return columns


def rank_sweep(info: SweepInfo, comparison: Comparison, metric: str) -> SweepRanking:
    """`comparison`: of the sweep's runs, in the sweep's order (studio.runs.compare.compare_runs)."""
    offered: dict[str, None] = dict.fromkeys(TRAINING_METRICS)
    runs: list[RankedRun] = []
    for row, curves in zip(comparison.rows, comparison.curves):
        values = run_metrics(row, curves)
        offered.update(dict.fromkeys(values))
        value = values.get(metric)
        note = "" if value is not None else _why_unranked(row, metric)
        runs.append(RankedRun(row.run_id, row.state, info.varied.get(row.run_id, {}), value, None, note))
    sign = 1.0 if lower_is_better(metric) else -1.0
    order = sorted(
        range(len(runs)), key=lambda i: (runs[i].value is None, sign * (runs[i].value or 0.0), i)
    )  # stable: a tie keeps the sweep's order
    for place, index in enumerate(i for i in order if runs[i].value is not None):
        runs[index].rank = place + 1
    ordered = Comparison(
        [comparison.rows[i] for i in order], [comparison.curves[i] for i in order], comparison.differing_fields
    )
    return SweepRanking(info, metric, [runs[i] for i in order], ordered, list(offered))


def _why_unranked(row: CompareRow, metric: str) -> Message:
    if row.state in _UNRANKED_NOTES:
        return say(_UNRANKED_NOTES[row.state])
    if row.state == "cancelled":
        return say("sweeps.note_cancelled")
    if row.state != "finished":  # failed, aborted, unreadable, missing
        return say("sweeps.note_stopped", problem=row.problem or row.state)
    if metric == "best_eval_loss":
        return say("sweeps.note_no_eval")
    if metric in EVALUATION_METRICS:
        return say("sweeps.note_not_evaluated")
    return say("sweeps.note_no_metric", metric=metric)
