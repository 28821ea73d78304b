"""Measure speed: a few real steps of the tiny model in a scratch folder, within the time limit."""

import time

import pytest

from studio.api import Studio
from studio.config import RunConfig
from studio.control.device_lock import DeviceBusy
from studio.paths import cache_dir
from tests.support import quick_run


def _scratch() -> set:
    folder = cache_dir() / "speed-measurements"
    return set(folder.glob("measure-*")) if folder.is_dir() else set()


def test_measure_speed_gives_a_rate_within_its_limit_and_leaves_nothing(tmp_path, locks, tiny_model_dir):
    studio = Studio(tmp_path / "runs", locks=locks)
    config = RunConfig().with_overrides(quick_run(tiny_model_dir))
    before, began = _scratch(), time.time()
    estimate = studio.measure_speed(config, limit_s=30)
    took = time.time() - began
    assert took < 30 + 30  # the limit, and the tokenising and killing around it (slow on a loaded machine)
    rate = estimate.rate
    assert rate.source == "measured" and rate.tokens_per_second > 0 and rate.startup_s > 0
    assert estimate.seconds > rate.startup_s and "speed measured" in estimate.describe()
    assert estimate.watch_unknown and "not counted" in estimate.describe()  # no run of the model has watched yet
    assert _scratch() <= before  # the scratch run's folder is gone
    assert locks.holder("cpu") is None  # and the CPU is free again
    assert studio.time_estimate(config).rate == rate  # remembered for this setup
    assert not list((tmp_path / "runs").glob("*"))  # no run was recorded


def test_a_busy_device_is_not_measured(tmp_path, locks, tiny_model_dir):
    studio = Studio(tmp_path / "runs", locks=locks)
    config = RunConfig().with_overrides({**quick_run(tiny_model_dir), "training.max_steps": "100000"})
    run_id = studio.start(config)
    try:
        with pytest.raises(DeviceBusy):
            studio.measure_speed(config, limit_s=30)
    finally:
        studio.abort(run_id)
        studio.wait(run_id, timeout=120)
