"""Real sweeps: tiny runs queued through the training service (from the command line too), trained one at a time in
the sweep's order, ranked by the best eval loss their own events record; found again from the run folders alone;
a cancelled sweep's queued runs never start. Real workers, real device locks."""

import os
import subprocess
import sys

import pytest

from studio.api import Studio, SweepError, SweepSpec
from studio.config import RunConfig
from studio.runs.events import Eval, Step
from tests.support import quick_run

LONG = {"training.max_steps": "100000", "training.eval_steps": "100000", "training.save_steps": "100000"}


def test_a_2x2_sweep_from_the_command_line_runs_in_order_and_ranks_by_best_eval_loss(tmp_path, tiny_model_dir):
    short = {"name": "tiny", "training.max_steps": "2", "training.eval_steps": "2", "data.max_samples": "20"}
    RunConfig().with_overrides({**quick_run(tiny_model_dir), **short}).save(tmp_path / "tiny.yaml")
    runs_dir = tmp_path / "runs"
    sets = ["--set", "training.learning_rate=1e-4,5e-2", "--set", "lora.rank=4,8"]
    command = [sys.executable, "-m", "studio.cli", "sweep", str(tmp_path / "tiny.yaml"), "--runs-dir", str(runs_dir)]
    env = {**os.environ, "QLORA_STUDIO_CACHE": str(tmp_path / "cache")}  # its own device locks
    result = subprocess.run([*command, *sets], capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Queued sweep tiny-sweep-" in result.stdout and "[4/4]" in result.stdout

    studio = Studio(runs_dir)  # another process: the sweep is rebuilt from the run folders
    [info] = studio.sweeps()
    names = ["tiny-lr1e-4-r4", "tiny-lr1e-4-r8", "tiny-lr5e-2-r4", "tiny-lr5e-2-r8"]
    assert [run.rsplit("-", 2)[0] for run in info.runs] == names and info.axes == [
        "training.learning_rate",
        "lora.rank",
    ]
    assert info.varied[info.runs[2]] == {"training.learning_rate": "5e-2", "lora.rank": "4"}
    spans = []
    for run_id in info.runs:  # one run per device: each started after the one before it ended, in the sweep's order
        events = studio.events(run_id)[0]
        assert studio.status(run_id).state == "finished"
        spans.append((events[0].time, events[-1].time))
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1)), spans

    # the ranking, against the best eval loss read here from each run's own events
    best = {run: min(e.eval_loss for e in studio.events(run)[0] if isinstance(e, Eval)) for run in info.runs}
    expected = sorted(info.runs, key=lambda run: (best[run], info.runs.index(run)))
    ranking = studio.sweep_ranking(info.sweep_id)
    assert ranking.metric == "best_eval_loss" and [run.run_id for run in ranking.runs] == expected
    assert [run.rank for run in ranking.runs] == [1, 2, 3, 4]
    assert [run.value for run in ranking.runs] == [best[run] for run in expected]
    assert [curves.run_id for curves in ranking.comparison.curves] == expected  # Compare overlays them in this order
    ranked_lines = result.stdout.split("ranked by best_eval_loss (lowest first):")[1].splitlines()[2:6]
    assert [line.split()[1] for line in ranked_lines] == expected  # the command printed the same ranking

    last = {run: [e.loss for e in studio.events(run)[0] if isinstance(e, Step)][-1] for run in info.runs}
    by_train = studio.sweep_ranking(info.sweep_id, "final_train_loss")
    assert [run.run_id for run in by_train.runs] == sorted(info.runs, key=lambda r: (last[r], info.runs.index(r)))


def test_cancelling_a_sweep_cancels_its_queued_runs_and_stops_the_training_one_only_when_asked(
    tmp_path, locks, tiny_model_dir
):
    studio = Studio(tmp_path / "runs", locks=locks)  # no queue keeper: the queued runs wait
    base = RunConfig().with_overrides({**quick_run(tiny_model_dir), "name": "long", **LONG})
    sweep_id = studio.start_sweep(studio.plan_sweep(base, SweepSpec.from_sets(["lora.rank=4,8,16"])))
    [info] = studio.sweeps()
    first, *queued = info.runs
    assert studio.status(first).state in ("starting", "running")
    assert [studio.status(run).queue_position for run in queued] == [1, 2]

    outcome = studio.cancel_sweep(sweep_id)
    assert outcome.cancelled == queued and outcome.running == [first] and not outcome.stopping
    assert f"{first} is still training" in outcome.message
    assert [studio.status(run).state for run in queued] == ["cancelled", "cancelled"]
    notes = {run.run_id: str(run.note) for run in studio.sweep_ranking(sweep_id).runs}
    assert notes[queued[0]] == "cancelled before it started" and notes[first] == "still training"

    outcome = studio.cancel_sweep(sweep_id, abort_running=True)
    assert outcome.stopping == [first] and not outcome.cancelled
    assert studio.wait(first, timeout=120).state == "aborted"
    assert studio.service.dispatch_queue() == []  # nothing of the sweep is left to start


def test_a_run_that_cannot_start_refuses_the_whole_sweep_before_anything_is_queued(tmp_path, locks, tiny_model_dir):
    studio = Studio(tmp_path / "runs", locks=locks)
    base = RunConfig().with_overrides({**quick_run(tiny_model_dir), "name": "data"})
    plan = studio.plan_sweep(base, SweepSpec.from_sets(["data.datasets=alpaca_zh_demo, no_such_set"]))
    with pytest.raises(SweepError, match="data-datasetsno_such_set of the sweep cannot start, so nothing was queued"):
        studio.start_sweep(plan)
    assert studio.runs() == [] and studio.sweeps() == []
    with pytest.raises(SweepError, match="No sweep named 'nope'"):
        studio.sweep_ranking("nope")


def test_the_command_line_plans_without_queueing_and_lists_ranks_and_cancels(tmp_path, capsys):
    from studio.cli import main

    runs = str(tmp_path / "runs")
    sets = ["--set", "training.learning_rate=1e-5..1e-3:log", "--set", "lora.rank=8,16"]
    assert main(["sweep", "--name", "cli", "--runs-dir", runs, *sets, "--random", "3", "--seed", "1", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "3 runs (random):" in out and "Dry run: nothing was queued." in out and out.count("cli-lr") == 3
    assert not (tmp_path / "runs").exists()
    assert main(["sweep", "--runs-dir", runs, "--set", "lora.rank=0,8", "--dry-run"]) == 2
    assert "lora.rank: Input should be greater than or equal to 1 (got 0)" in capsys.readouterr().err
    assert main(["sweeps", "--runs-dir", runs]) == 0 and "No sweeps in" in capsys.readouterr().out
    assert main(["sweeps", "nope", "--runs-dir", runs, "--cancel"]) == 2


def test_a_served_studio_checks_every_run_against_its_workspace_before_queueing(tmp_path, locks, tiny_model_dir):
    from studio.workspace import Workspace

    root = tmp_path / "workspace"  # the tiny model lies outside it
    root.mkdir()
    studio = Studio(root / "runs", Workspace.serve(root, root / "runs"), locks=locks)
    base = RunConfig().with_overrides({**quick_run(tiny_model_dir), "name": "outside"})
    plan = studio.plan_sweep(base, SweepSpec.from_sets(["lora.rank=4,8"]))
    with pytest.raises(SweepError, match="outside-r4 of the sweep cannot start, so nothing was queued"):
        studio.start_sweep(plan)
    assert studio.runs() == []
