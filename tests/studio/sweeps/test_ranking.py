"""A sweep's runs ranked by one metric: the best first (lowest loss, highest ROUGE), runs without it after them in
the sweep's order, each saying why."""

from studio.runs.compare import CompareRow, Comparison, RunCurves
from studio.runs.history import Series
from studio.sweeps.ranking import rank_sweep
from studio.sweeps.record import SweepInfo


def _row(run_id, state, best=None, final=None, rouge=None, problem=""):
    row = CompareRow(run_id, state, best_eval_loss=best, problem=problem)
    if rouge is not None:
        row.metrics = {"rouge-l": rouge, "eval_loss": best or 0.0}
    curves = RunCurves(run_id)
    if final is not None:
        curves.series["loss"] = Series()
        for step, loss in ((1, final + 1.0), (2, final)):
            curves.series["loss"].add(step, loss)
    return row, curves


def _sweep(*rows):
    runs = [row.run_id for row, _ in rows]
    info = SweepInfo("s", ["lora.rank"], "best_eval_loss", "grid", len(runs), 0.0, runs)
    info.varied = {run: {"lora.rank": str(4 * (i + 1))} for i, run in enumerate(runs)}
    return info, Comparison([row for row, _ in rows], [curves for _, curves in rows], ["lora.rank"])


def test_lowest_loss_first_and_runs_without_it_last_saying_why():
    info, comparison = _sweep(
        _row("a", "finished", best=2.5, final=2.0, rouge=10.0),
        _row("b", "cancelled"),
        _row("c", "finished", best=1.5, final=2.2),
        _row("d", "running", final=3.0),
        _row("e", "failed", problem="CUDA out of memory"),
        _row("f", "queued"),
        _row("g", "finished", best=1.5, final=1.0, rouge=30.0),
    )
    ranking = rank_sweep(info, comparison, "best_eval_loss")
    assert [run.run_id for run in ranking.runs] == ["c", "g", "a", "b", "d", "e", "f"]  # a tie keeps sweep order
    assert [run.rank for run in ranking.runs] == [1, 2, 3, None, None, None, None]
    notes = {run.run_id: str(run.note) for run in ranking.runs}
    assert notes["b"] == "cancelled before it started" and notes["d"] == "still training"
    assert notes["e"] == "ended before recording it: CUDA out of memory" and notes["f"] == "waiting in the queue"
    assert ranking.best.run_id == "c" and ranking.live and ranking.lower_is_better
    assert [row.run_id for row in ranking.comparison.rows] == [run.run_id for run in ranking.runs]  # charts follow
    assert [c.run_id for c in ranking.comparison.curves] == [run.run_id for run in ranking.runs]
    assert ranking.metrics[:2] == ["best_eval_loss", "final_train_loss"] and "rouge-l" in ranking.metrics
    table = dict(ranking.table())
    assert table["rank"][:3] == ["1", "2", "3"] and table["best_eval_loss"][0] == "1.5000"
    assert table["lora.rank"] == ["12", "28", "4", "8", "16", "20", "24"]
    assert ranking.runs[4].note.text("ja") == "まだ学習中"  # notes are said in each reader's language


def test_other_metrics_rank_in_their_own_direction_and_say_what_is_missing():
    info, comparison = _sweep(
        _row("a", "finished", best=2.5, final=2.0, rouge=10.0),
        _row("b", "finished", final=1.0),
        _row("c", "finished", best=1.5, final=1.5, rouge=30.0),
    )
    by_rouge = rank_sweep(info, comparison, "rouge-l")
    assert [run.run_id for run in by_rouge.runs] == ["c", "a", "b"] and not by_rouge.lower_is_better
    assert "evaluate its adapter" in str(by_rouge.runs[2].note)
    by_train = rank_sweep(info, comparison, "final_train_loss")
    assert [run.run_id for run in by_train.runs] == ["b", "c", "a"]
    assert str(rank_sweep(info, comparison, "best_eval_loss").runs[2].note).startswith("no held-out evaluation")
    assert str(rank_sweep(info, comparison, "reward_accuracy").runs[0].note) == "this run records no reward_accuracy"
    assert not by_rouge.live
