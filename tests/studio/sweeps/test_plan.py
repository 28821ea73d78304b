"""A sweep planned: fields and values read as typed, runs expanded (grid or seeded random), named after what they
vary, every run validated before anything is queued."""

import pytest

from studio.config import RunConfig
from studio.sweeps.plan import plan_sweep
from studio.sweeps.spec import MAX_RUNS, Axis, SweepError, SweepSpec, short_number, split_values

BASE = RunConfig().with_overrides({"name": "demo"})


def test_a_grid_is_every_combination_in_order_named_after_its_values():
    spec = SweepSpec.from_lines("training.learning_rate = 1e-4, 2e-4\n\n# a comment\nlora.rank = 8, 16\n")
    plan = plan_sweep(BASE, spec)
    assert [run.name for run in plan.runs] == ["demo-lr1e-4-r8", "demo-lr1e-4-r16", "demo-lr2e-4-r8", "demo-lr2e-4-r16"]
    assert [(run.config.training.learning_rate, run.config.lora.rank) for run in plan.runs] == [
        (1e-4, 8),
        (1e-4, 16),
        (2e-4, 8),
        (2e-4, 16),
    ]
    assert [run.index for run in plan.runs] == [0, 1, 2, 3]
    assert plan.runs[3].varied == {"training.learning_rate": "2e-4", "lora.rank": "16"}
    assert plan.axes == ["training.learning_rate", "lora.rank"]
    assert dict(plan.table())["run"][0] == "demo-lr1e-4-r8" and dict(plan.table())["lora.rank"] == ["8", "16"] * 2
    assert all(run.config.name == run.name for run in plan.runs)  # the run folder is named after it


def test_one_value_sets_a_field_for_every_run_without_naming_it():
    plan = plan_sweep(BASE, SweepSpec.from_sets(["lora.rank=4,8", "training.max_steps=2"]))
    assert [run.name for run in plan.runs] == ["demo-r4", "demo-r8"]
    assert {run.config.training.max_steps for run in plan.runs} == {2} and plan.axes == ["lora.rank"]


def test_values_read_like_command_line_values_and_list_fields_take_one_item_or_a_list():
    plan = plan_sweep(
        BASE,
        SweepSpec.from_sets(["data.datasets=alpaca_zh_demo, [identity, sharegpt_zh_demo]", "lora.use_dora=true"]),
    )
    assert [run.config.data.datasets for run in plan.runs] == [["alpaca_zh_demo"], ["identity", "sharegpt_zh_demo"]]
    assert [run.name for run in plan.runs] == ["demo-datasetsalpaca_zh_demo", "demo-datasetsidentity_sharegpt_zh_demo"]
    assert all(run.config.lora.use_dora for run in plan.runs)
    assert split_values('1e-4, [a, b], "x, y"') == ["1e-4", "[a, b]", '"x, y"']


def test_a_random_sweep_draws_the_same_runs_for_the_same_seed_within_its_ranges():
    sets = ["training.learning_rate=1e-5..1e-3:log", "lora.rank=4..32", "lora.dropout=0, 0.1"]
    spec = SweepSpec.from_sets(sets, mode="random", count=12, seed=7)
    first, again = plan_sweep(BASE, spec), plan_sweep(BASE, spec)
    assert [run.name for run in first.runs] == [run.name for run in again.runs] and len(first.runs) == 12
    other = plan_sweep(BASE, spec.model_copy(update={"seed": 8}))
    assert [run.name for run in other.runs] != [run.name for run in first.runs]
    rates = [run.config.training.learning_rate for run in first.runs]
    assert all(1e-5 <= rate <= 1e-3 for rate in rates)
    assert min(rates) < 1e-4 < max(rates)  # log scale: the lower decades are drawn too
    assert all(isinstance(run.config.lora.rank, int) and 4 <= run.config.lora.rank <= 32 for run in first.runs)
    assert {run.config.lora.dropout for run in first.runs} <= {0.0, 0.1}
    run = first.runs[0]  # the name shows the value the run trains with, rounded the same way
    assert f"lr{run.varied['training.learning_rate']}-r{run.config.lora.rank}" in run.name
    assert float(run.varied["training.learning_rate"]) == run.config.training.learning_rate


def test_short_numbers_and_lines_read_back():
    assert [short_number(v) for v in (0.000237, 0.05, 12.0, 12345.6, 1e-6)] == [
        "2.37e-4",
        "0.05",
        "12",
        "1.23e4",
        "1e-6",
    ]
    axis = Axis.parse("training.learning_rate = 1e-5 .. 1e-3 : log")
    assert (axis.low, axis.high, axis.scale, axis.integer) == (1e-5, 1e-3, "log", False)
    assert Axis.parse(axis.written()) == axis
    assert Axis.parse("lora.rank=4..32").integer and Axis.parse(" lora.rank = 8, 16 ").values == ["8", "16"]


@pytest.mark.parametrize(
    ("sets", "mode", "said"),
    [
        (["lora.rank=0,8"], "grid", "1 of the sweep's 2 runs cannot train as set, so nothing was queued"),
        (["lora.rank=0,8"], "grid", "lora.rank: Input should be greater than or equal to 1 (got 0)"),
        (["lora.nope=1,2"], "grid", "lora.nope is not a config field"),
        (["lora=1,2"], "grid", "lora is not a config field"),
        (["name=a,b"], "grid", "The sweep names its runs"),
        (["training.learning_rate=1e-4..1e-3"], "grid", "a grid needs the values listed"),
        (["training.learning_rate=1e-3..1e-5"], "random", "low end (0.001) must be below its high end (1e-05)"),
        (["training.learning_rate=0..1e-3:log"], "random", "log-scale range needs a low end above 0"),
        (["lora.rank 8"], "grid", "'lora.rank 8' is not a field and its values"),
        (["lora.rank=8,,16"], "grid", "remove the extra comma"),
        (["lora.rank=8", "lora.rank=16"], "grid", "lora.rank is listed twice"),
        ([], "grid", "Name at least one field to vary"),
        (
            ["lora.rank=" + ",".join(map(str, range(1, 10))), "lora.alpha=" + ",".join(map(str, range(1, 10)))],
            "grid",
            f"The grid makes 81 runs; a sweep queues at most {MAX_RUNS}",
        ),
        # a combination the config refuses (a whole-model method on a 4-bit base), found before anything is queued
        (["finetuning.method=lora,full", "quantization.method=4bit"], "grid", "finetuning.method"),
    ],
)
def test_what_cannot_train_is_refused_naming_the_field_and_value(sets, mode, said):
    with pytest.raises(SweepError) as refused:
        plan_sweep(BASE, SweepSpec.from_sets(sets, mode=mode, count=3))
    assert said in str(refused.value)


def test_the_same_bad_value_is_said_once_and_each_language_says_it():
    with pytest.raises(SweepError) as refused:
        plan_sweep(BASE, SweepSpec.from_sets(["lora.rank=0,8", "training.learning_rate=1e-4,2e-4,3e-4"]))
    text = str(refused.value)
    assert text.startswith("3 of the sweep's 6 runs") and text.count("got 0") == 1
    assert "无法训练" in refused.value.text("zh")


def test_names_stay_folder_safe_and_distinct():
    plan = plan_sweep(BASE, SweepSpec.from_sets(["lora.dropout=0.1, 0.10", "training.lr_scheduler=cosine,linear"]))
    names = [run.name for run in plan.runs]
    assert names[:2] == ["demo-drop0.1-cosine", "demo-drop0.1-linear"] and names[2] == "demo-drop0.10-cosine"
    repeated = plan_sweep(BASE, SweepSpec.from_sets(["lora.rank=8,16"], mode="random", count=6, seed=1))
    assert len({run.name for run in repeated.runs}) == 6  # the same draw twice gets -2
    assert any(run.name.endswith("-2") for run in repeated.runs)
    long = RunConfig().with_overrides({"name": "x" * 200})
    assert all(len(run.name) <= 120 for run in plan_sweep(long, SweepSpec.from_sets(["lora.rank=8,16"])).runs)
    assert SweepSpec.from_sets(["lora.rank=8,16", "lora.alpha=1,2"]).size == 4
