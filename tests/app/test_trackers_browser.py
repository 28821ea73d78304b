"""Experiment trackers from the page, in a real Chromium: turn on TensorBoard and MLflow in the Train tab, train a
few steps, and find the run's loss curve in both stores, read with their own readers, equal to events.jsonl."""

import pytest

from app.server import build_page
from studio.api import Studio
from studio.config import RunConfig
from studio.runs.folder import RunFolder
from tests.support.form_driver import read_value, reveal, set_value
from tests.support.trackers import mlflow_metric, mlflow_run, recorded, tensorboard_scalars


@pytest.fixture(scope="module")
def layout(studio):
    return build_page(Studio("runs"), RunConfig.from_yaml(studio.config_file))


@pytest.fixture(scope="module")
def page(open_page):
    return open_page("Train", height=1400)


def _set(page, layout, path: str, value) -> None:
    control = layout.page.form.controls[path]
    reveal(page, control.component)
    set_value(page, control, value)
    assert read_value(page, control) == value, path


def test_a_run_reports_its_loss_curve_to_tensorboard_and_mlflow(page, layout, studio, shoot):
    for path, value in (
        ("training.max_steps", "6"),  # optional: a text box
        ("training.logging_steps", 1),
        ("training.eval_steps", 3),
        ("logging.report_to", ["tensorboard", "mlflow"]),
    ):
        _set(page, layout, path, value)
    shoot(page, "50-trackers-chosen")
    runs = page.locator("#qs-runs input")
    before = runs.input_value()
    page.locator("#qs-start").click()
    page.wait_for_function(
        "before => (document.querySelector('#qs-runs input') || {}).value !== before", arg=before, timeout=120_000
    )
    run_id = runs.input_value()
    page.locator("#qs-progress").get_by_text("finished").wait_for(timeout=300_000)
    log = page.locator("#qs-log textarea")  # the monitor says where each tracker wrote, and how to look
    page.wait_for_function(
        "() => document.querySelector('#qs-log textarea').value.includes('MLflow receives')", timeout=30_000
    )
    shoot(page, "51-trackers-finished")

    folder = RunFolder(studio.root / "runs" / run_id)
    events, _ = folder.read_events()
    losses = recorded(events, "step", "loss")
    assert sorted(losses) == [1, 2, 3, 4, 5, 6]
    assert f"tensorboard --logdir {folder.path / 'tensorboard'}" in log.input_value()
    assert tensorboard_scalars(folder.path / "tensorboard")["train/loss"] == pytest.approx(losses, rel=1e-6)
    client, run = mlflow_run(studio.root / "runs" / "mlruns", "qlora-studio", run_id)
    assert mlflow_metric(client, run, "train/loss") == losses
    assert mlflow_metric(client, run, "eval/loss") == recorded(events, "eval", "eval_loss")
    assert run.data.params["training.max_steps"] == "6" and run.info.status == "FINISHED"
