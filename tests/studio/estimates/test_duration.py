"""How long: tokens over a rate, the rate from the newest finished run like the planned one."""

import statistics

import pytest

from studio.api import Studio
from studio.config import RunConfig
from studio.errors import StudioError
from studio.estimates.data_tokens import DataTokens
from studio.estimates.duration import Rate, duration_text, estimate_duration, watch_seconds
from studio.locales import in_language
from studio.runs.events import Step, Watched
from tests.support import quick_run


def test_the_time_is_start_up_tokens_over_the_rate_and_the_evaluations():
    config = RunConfig().with_overrides(
        {"training.batch_size": "2", "training.gradient_accumulation_steps": "2", "training.num_epochs": "2"}
    )
    config = config.with_overrides({"training.eval_steps": "10"})
    data = DataTokens(
        train_examples=100,
        val_examples=10,
        train_tokens=10_000,
        val_tokens=900,
        mean=100,
        longest=200,
        spread=30,
        sampled=100,
    )
    rate = Rate(tokens_per_second=500.0, startup_s=12.0, source="measured", measured_at=0.0)
    estimate = estimate_duration(config, data, rate)
    assert estimate.steps == 50 and estimate.tokens == 20_000 and estimate.evaluations == 5
    # forward passes over the validation split, three times as fast as training
    assert estimate.seconds == pytest.approx(12.0 + 20_000 / 500 + 5 * 900 / (3 * 500))
    assert estimate.watch_unknown  # nothing says how long the watched answers take
    watched = estimate_duration(config, data, rate, watch_s=2.0)
    assert watched.seconds == pytest.approx(estimate.seconds + 5 * 2.0) and not watched.watch_unknown
    measured_eval = estimate_duration(config, data, Rate(500.0, 12.0, "run", 0.0, "r", eval_s=4.0, finish_s=1.0))
    assert measured_eval.seconds == pytest.approx(12.0 + 40 + 5 * 4.0 + 1.0)


def test_durations_read_as_people_say_them():
    assert [duration_text(s) for s in (40, 95, 600, 3900)] == ["40 s", "1 min 35 s", "10 min", "1 h 05 min"]


@pytest.mark.parametrize(
    ("lang", "said"),
    [
        ("en", ["40 s", "1 min 12 s", "10 min", "1 h 05 min"]),
        ("zh", ["40 秒", "1 分 12 秒", "10 分钟", "1 小时 5 分"]),
        ("ru", ["40 с", "1 мин 12 с", "10 мин", "1 ч 05 мин"]),
        ("ko", ["40초", "1분 12초", "10분", "1시간 5분"]),
        ("ja", ["40 秒", "1 分 12 秒", "10 分", "1 時間 5 分"]),
    ],
)
def test_durations_are_said_in_the_readers_language(lang, said):
    assert [in_language(duration_text(s), lang) for s in (40, 72, 600, 3900)] == said


def test_the_time_line_says_its_units_in_the_readers_language():
    config = RunConfig().with_overrides({"training.batch_size": "2", "training.num_epochs": "1"})
    data = DataTokens(
        train_examples=10,
        val_examples=0,
        train_tokens=7_000,
        val_tokens=0,
        mean=700,
        longest=800,
        spread=50,
        sampled=10,
    )
    rate = Rate(tokens_per_second=100.0, startup_s=2.0, source="measured", measured_at=1000.0)
    said = estimate_duration(config, data, rate).describe(now=1000.0 + 3900)
    assert str(said).startswith("about 1 min 12 s:") and "1 h 05 min ago" in str(said)
    chinese = said.text("zh")
    assert chinese.startswith("约 1 分 12 秒：") and "1 小时 5 分" in chinese and "min" not in chinese


def test_the_time_comes_from_the_last_finished_run_like_this_one(tmp_path, locks, tiny_model_dir):
    studio = Studio(tmp_path / "runs", locks=locks)
    config = RunConfig().with_overrides(
        {**quick_run(tiny_model_dir), "training.max_steps": "6", "training.eval_steps": "3", "name": "rated"}
    )
    with pytest.raises(StudioError, match="no finished run like this one"):
        studio.time_estimate(config)
    run_id = studio.start(config)
    assert studio.wait(run_id, timeout=300).state == "finished"

    longer = config.with_overrides({"training.max_steps": "12"})
    estimate = studio.time_estimate(longer)
    steps = [e for e in studio.events(run_id)[0] if isinstance(e, Step)]
    assert estimate.rate.source == "run" and estimate.rate.run_id == run_id
    assert estimate.rate.tokens_per_second == pytest.approx(statistics.median(s.tokens_per_second for s in steps[1:]))
    assert estimate.steps == 12 and estimate.rate.eval_s is not None and estimate.rate.startup_s > 0
    assert estimate.seconds > studio.time_estimate(config).seconds  # twice the steps take longer
    assert "run " + run_id in estimate.describe()

    other_batch = config.with_overrides({"training.batch_size": "3"})  # trains at another speed: not comparable
    with pytest.raises(StudioError, match="Measure speed"):
        studio.time_estimate(other_batch)

    # the watched answers of a measured rate's evaluations: as the run of the same model took them, per new token
    watched = [e.seconds for e in studio.events(run_id)[0] if isinstance(e, Watched)]
    per_eval = watch_seconds(tmp_path / "runs", other_batch, "cpu")
    assert watched and per_eval == pytest.approx(statistics.fmean(watched))
    longer_answers = other_batch.with_overrides({"evaluation.watch_max_new_tokens": "128"})
    assert watch_seconds(tmp_path / "runs", longer_answers, "cpu") == pytest.approx(per_eval * 128 / 64)
    assert watch_seconds(tmp_path / "runs", other_batch.with_overrides({"evaluation.watch_count": "0"}), "cpu") == 0
