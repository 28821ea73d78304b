"""Compare: rows and curves from real run folders (two finished, one killed), damaged folders, the CLI table."""

import shutil
import subprocess
import sys

from studio.runs.compare import CompareRow, Comparison, RunCurves, _fold_events, compare_runs
from studio.runs.events import AttemptStarted, Eval, Preference, Step


def test_rows_say_what_differs_and_how_each_run_did(three_runs):
    runs_dir, ids = three_runs
    comparison = compare_runs(runs_dir, [ids["small"], ids["wide"], ids["broken"]])
    small, wide, broken = comparison.rows
    assert [r.state for r in comparison.rows] == ["finished", "finished", "failed"]
    assert {"lora.rank", "training.learning_rate", "training.max_steps"} <= set(comparison.differing_fields)
    assert "model.name_or_path" not in comparison.differing_fields  # the same in all three
    assert (small.differing["lora.rank"], wide.differing["lora.rank"], broken.differing["lora.rank"]) == (
        "4",
        "16",
        "8",
    )
    assert small.best_eval_loss is not None and small.best_eval_step in (3, 6)
    assert set(small.metrics) >= {"bleu-4", "rouge-l"} and not wide.metrics  # only 'small' was evaluated
    assert small.adapter and wide.adapter and broken.adapter is None
    assert "SIGKILL" in broken.problem and broken.best_eval_loss is None
    for row in (small, wide, broken):
        assert row.duration_s > 0 and row.tokens_per_second > 0 and row.peak_memory_mib > 0 and row.memory_kind == "RSS"
    curves = {c.run_id: c for c in comparison.curves}
    small_curves = curves[ids["small"]]
    assert small_curves.series["loss"].x == [1, 2, 3, 4, 5, 6] and small_curves.series["eval_loss"].x == [3, 6]
    tokens = small_curves.tokens([1, 3, 6])
    assert 0 < tokens[0] < tokens[1] < tokens[2]
    assert len(curves[ids["broken"]].series["loss"].x) >= 2


def test_the_table_has_one_cell_per_run_and_says_why_a_run_is_missing(three_runs, tmp_path):
    runs_dir, ids = three_runs
    copy = tmp_path / "runs"
    shutil.copytree(runs_dir / ids["wide"], copy / ids["wide"])
    shutil.copytree(runs_dir / ids["small"], copy / ids["small"])
    (copy / ids["small"] / "config.yaml").write_text("lora: [not, a, mapping\n")  # damaged
    comparison = compare_runs(copy, [ids["wide"], ids["small"], "gone-20250101-000000", "../etc"])
    columns = dict(comparison.table())
    assert columns["run"] == [ids["wide"], ids["small"], "gone-20250101-000000", "../etc"]
    assert columns["state"][2:] == ["missing", "missing"] and all(len(cells) == 4 for cells in columns.values())
    assert "config" in columns["problem"][1].lower() and columns["problem"][3] == "not a run name"
    assert comparison.differing_fields == []  # one readable config: nothing to differ from


def test_the_cli_prints_the_same_table(three_runs):
    runs_dir, ids = three_runs
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "studio.cli",
            "runs",
            "--runs-dir",
            str(runs_dir),
            "--compare",
            ids["small"],
            ids["wide"],
            ids["broken"],
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert ids["small"] in lines["run"] and "failed" in lines["state"] and "16" in lines["lora.rank"]
    assert {"best_eval", "bleu-4", "rouge-l", "duration", "tokens_per_second", "peak_memory"} <= set(lines)


def test_a_resumed_attempt_replaces_later_steps_and_preference_numbers_become_curves_and_cells():
    def step(n, elapsed):
        return Step(
            step=n,
            total_steps=6,
            epoch=0.1,
            loss=1.0 / n,
            learning_rate=1e-4,
            grad_norm=1.0,
            tokens_per_second=100.0,
            elapsed_s=elapsed,
            eta_s=None,
            rss_mib=500.0,
        )

    def preference(n, split, margin, accuracy):
        return Preference(
            step=n,
            split=split,
            rewards_chosen=margin / 2,
            rewards_rejected=-margin / 2,
            reward_margin=margin,
            reward_accuracy=accuracy,
        )

    events = [
        AttemptStarted(attempt=1),
        step(1, 1.0),
        preference(1, "train", 0.1, 0.5),
        step(2, 2.0),
        preference(2, "train", 0.2, 0.5),
        step(3, 3.0),
        Eval(step=3, epoch=0.1, eval_loss=0.9, best_eval_loss=0.9, patience_left=None),
        preference(3, "eval", 0.25, 0.6),
        AttemptStarted(attempt=2, start_step=2),
        step(3, 1.5),
        preference(3, "train", 0.3, 0.75),
        step(4, 2.5),
        preference(4, "train", 0.4, 1.0),
    ]
    row, curves = CompareRow("r", "finished"), RunCurves("r")
    _fold_events(events, row, curves)
    assert curves.series["loss"].x == [1, 2, 3, 4] and curves.series["reward_margin"].y == [0.1, 0.2, 0.3, 0.4]
    assert curves.series["eval_loss"].x == [] and row.best_eval_loss is None  # its step was replaced
    assert curves.series["eval_reward_accuracy"].x == []
    assert curves.tokens_at == {1: 100, 2: 200, 3: 350, 4: 450}  # tokens/s x the time since the previous step
    table = dict(Comparison([row], [curves], []).table())  # the held-out values went with their attempt
    assert table["training_reward_accuracy"] == ["100% (train)"] and table["training_reward_margin"] == [
        "+0.400 (train)"
    ]
    curves.series["eval_reward_accuracy"].add(4, 0.8)
    _fold_events([], row, curves)
    assert dict(Comparison([row], [curves], []).table())["training_reward_accuracy"] == ["80% (eval)"]
