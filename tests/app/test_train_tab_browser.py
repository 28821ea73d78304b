"""The Train tab in a real headless Chromium: tabs, language, preview, live training, reload, abort."""

import json
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

LOSS_POINTS = """() => {
  const plot = document.querySelector('#qs-loss-chart .js-plotly-plot');
  return plot && plot.data && plot.data.length ? plot.data[0].x.length : 0;
}"""


WATCHED_ROWS = """() => [...document.querySelectorAll('#qs-watched [role=row][data-index]')].map(row =>
  [0, 1, 2].map(column => row.querySelector(`[data-col="${column}"]`)?.innerText.trim() ?? ''))"""


def _wait(page, predicate, timeout=300.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        page.wait_for_timeout(500)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def page(open_page):
    return open_page("Train")


def test_page_loads_with_four_tabs_in_order(page, shoot):
    tabs = [t.strip() for t in page.get_by_role("tab").all_inner_texts()]
    assert tabs[:4] == ["Train", "Evaluate & Predict", "Chat", "Export"]
    shoot(page, "01-loaded")


def test_language_switch_changes_labels(page, shoot):
    # the labels change by events of their own, which a loaded machine may answer seconds apart
    page.get_by_text("中文", exact=True).click()
    page.get_by_role("tab", name="训练").wait_for(timeout=30_000)
    expect(page.get_by_role("button", name="开始训练")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("学习率").first).to_be_visible(timeout=30_000)
    shoot(page, "02-chinese")
    page.get_by_text("English", exact=True).click()
    page.get_by_role("tab", name="Train").wait_for(timeout=30_000)
    expect(page.get_by_role("button", name="Start")).to_be_visible(timeout=30_000)


def test_preview_command_shows_the_command_and_the_memory_it_needs(page, shoot):
    page.get_by_role("button", name="Preview command").click()
    cli = page.locator("#qs-cli")
    cli.get_by_text("qlora-studio train").first.wait_for(timeout=30_000)
    cli.get_by_text("Memory per process (estimate)").first.wait_for(timeout=30_000)
    assert "GiB" in cli.inner_text()
    shoot(page, "02b-command-preview")


def test_preview_dataset_shows_rows_and_lengths(page, shoot):
    page.get_by_role("button", name="Preview dataset").click()
    preview = page.locator("#qs-preview")
    preview.get_by_text("alpaca_zh_demo").first.wait_for(timeout=60_000)
    page.locator("#qs-preview-table").get_by_text("为什么天空是蓝色的？").first.wait_for(timeout=30_000)
    assert "tokens: median" in preview.inner_text()
    shoot(page, "03-preview")


@pytest.fixture
def training(page, studio):
    """The page showing a run that trains: the one the runs folder says is training, else one started here."""
    progress = page.locator("#qs-progress")
    running = _training_run(studio.root / "runs")
    if running is None:
        page.locator("#qs-start").click()
        _wait(page, lambda: "running" in progress.inner_text(), timeout=120, what="the run to start")
    elif page.locator("#qs-runs input").input_value() != running:
        page.locator("#qs-runs input").click()
        page.get_by_role("option", name=running, exact=True).click()
        _wait(page, lambda: "running" in progress.inner_text(), timeout=30, what="the running run")
    _wait(page, lambda: page.evaluate(LOSS_POINTS) >= 3, what="3 loss points")
    return page


def _training_run(runs: Path) -> str | None:
    for status_file in runs.glob("*/status.json"):
        status = json.loads(status_file.read_text())
        if status["state"] in ("starting", "running"):
            return status["run_id"]
    return None


def test_start_streams_loss_points(training, shoot):
    assert "running" in training.locator("#qs-progress").inner_text()
    shoot(training, "04-training")


def test_reload_brings_the_curve_back_and_it_keeps_growing(training, shoot):
    page = training
    before = page.evaluate(LOSS_POINTS)
    page.reload()
    page.get_by_role("tab", name="Train").wait_for(timeout=60_000)
    after_reload = _wait(page, lambda: page.evaluate(LOSS_POINTS), what="the curve after reload")
    assert after_reload >= before
    _wait(page, lambda: page.evaluate(LOSS_POINTS) > after_reload, what="the curve to grow")
    shoot(page, "05-reloaded")


def test_watched_answers_appear_under_the_charts_at_each_evaluation(training, shoot):
    """Two evaluations or more, newest first, the same prompts answered differently as the run learns."""
    watched = training.locator("#qs-watched")
    _wait(training, lambda: len(set(_watched_rows(training))) >= 2, timeout=300, what="two evaluations' answers")
    text = watched.inner_text()
    assert "Watched answers" in text and "prompt" in text and "answer" in text
    evaluations = _watched_rows(training)  # step -> {prompt: answer}, as many as the table has drawn
    steps = [int(step) for step in evaluations]
    assert steps == sorted(steps, reverse=True) and steps[0] >= 400
    newest, before = list(evaluations.values())[:2]
    assert newest.keys() == before.keys() and len(set(map(str, evaluations.values()))) > 1, evaluations
    shoot(training, "05b-watched")


def _watched_rows(page) -> dict[str, dict[str, str]]:
    """The watched table's rows the page has drawn (it draws those in view), by step in table order."""
    rows: dict[str, dict[str, str]] = {}
    for step, prompt, answer in page.evaluate(WATCHED_ROWS):
        rows.setdefault(step, {})[prompt] = answer
    return rows


def test_starting_twice_is_refused_in_the_page(training):
    training.locator("#qs-start").click()
    training.get_by_text("busy training run").first.wait_for(timeout=30_000)


def test_a_busy_start_offers_queue_and_a_queued_run_can_be_cancelled(training, studio, shoot):
    page, running = training, training.locator("#qs-runs input").input_value()
    page.locator("#qs-start").click()  # refused: the CPU is busy, so Queue it is offered
    queue = page.locator("#qs-queue")
    queue.wait_for(state="visible", timeout=30_000)
    queue.click()
    page.get_by_text("Queued run").first.wait_for(timeout=30_000)
    _wait(page, lambda: "queued #1" in page.locator("#qs-progress").inner_text(), timeout=60, what="queued #1")
    queued = page.locator("#qs-progress").inner_text()
    assert "waiting for the CPU" in queued and "elapsed" not in queued  # nothing has run yet: no counters shown
    assert not queue.is_visible()
    shoot(page, "06-queued")
    page.locator("#qs-abort").click()  # a queued run is cancelled: it never starts
    page.get_by_text("the queued run left the queue without starting").wait_for(timeout=30_000)
    _wait(page, lambda: "cancelled" in page.locator("#qs-progress").inner_text(), timeout=60, what="cancelled")
    assert _training_run(studio.root / "runs") == running  # the run that trains went on
    page.locator("#qs-runs input").click()  # back to the run that trains
    page.get_by_role("option", name=running, exact=True).click()
    _wait(page, lambda: "running" in page.locator("#qs-progress").inner_text(), timeout=30, what="the running run")


def test_abort_ends_with_status_aborted(training, shoot):
    training.locator("#qs-abort").click()
    _wait(training, lambda: "aborted" in training.locator("#qs-progress").inner_text(), timeout=60, what="aborted")
    shoot(training, "07-aborted")
