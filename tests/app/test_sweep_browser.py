"""A sweep in a real headless Chromium: four tiny runs planned and queued from the Train tab's Sweep panel, trained
one at a time, found ranked by best eval loss in Compare runs with their curves overlaid; a sweep cancelled there."""

import json

import pytest

AXES = """training.learning_rate = 1e-4, 5e-2
lora.rank = 4, 8
# one value: set for every run, not in the names
training.max_steps = 2
training.eval_steps = 2
training.logging_steps = 1"""
NAMES = ["browser-lr1e-4-r4", "browser-lr1e-4-r8", "browser-lr5e-2-r4", "browser-lr5e-2-r8"]


@pytest.fixture(scope="module")
def page(open_page):
    return open_page("Train", height=1400)


def _open_sweep_panel(page):
    header = page.locator("#qs-sweep > button.label-wrap, #qs-sweep button.label-wrap").first
    if "open" not in (header.get_attribute("class") or ""):
        header.click()
    page.locator("#qs-sweep-axes textarea").wait_for(timeout=10_000)


def _best_eval_losses(runs_dir, prefix):
    """{run id: (its place in the sweep, its best eval loss from its own events)} of the sweep whose runs start so."""
    found = {}
    for mark in runs_dir.glob(f"{prefix}*/sweep.json"):
        events = [json.loads(line) for line in (mark.parent / "events.jsonl").read_text().splitlines()]
        losses = [event["eval_loss"] for event in events if event["type"] == "eval"]
        found[mark.parent.name] = (json.loads(mark.read_text())["index"], min(losses))
    return found


def test_a_sweep_of_four_runs_queued_from_the_page_ends_ranked_in_compare(page, studio, shoot):
    page.get_by_role("tab", name="Train").click()
    _open_sweep_panel(page)
    page.locator("#qs-sweep-axes textarea").fill(AXES)
    page.locator("#qs-sweep-plan").click()
    planned = page.locator("#qs-sweep-planned")
    planned.get_by_text(NAMES[-1]).wait_for(timeout=30_000)
    assert [name in planned.inner_text() for name in NAMES] == [True] * 4
    assert "4 runs would be queued" in page.locator("#qs-sweep-message").inner_text()
    assert not list((studio.root / "runs").glob("browser-lr*"))  # planned, nothing queued
    shoot(page, "15-sweep-planned")

    page.locator("#qs-sweep-queue").click()
    page.locator("#qs-sweep-message").get_by_text("Queued sweep").wait_for(timeout=60_000)
    assert "4 runs" in page.locator("#qs-sweep-message").inner_text()

    page.get_by_role("tab", name="Compare runs").click()
    page.locator("#qs-sweep-table").wait_for(state="visible", timeout=30_000)  # the newest sweep, shown at once
    summary = page.locator("#qs-sweep-summary")
    summary.get_by_text("4 of 4 runs have ended").wait_for(timeout=600_000)  # redrawn by itself while runs train
    runs = _best_eval_losses(studio.root / "runs", "browser-lr")
    assert sorted(run.rsplit("-", 2)[0] for run in runs) == NAMES
    expected = sorted(runs, key=lambda run: (runs[run][1], runs[run][0]))  # best eval loss, read here
    # the table shows all four ended (its rows may be drawn a moment after the summary's text): wait, then read
    page.wait_for_function(
        "() => document.querySelector('#qs-sweep-table').innerText.split('finished').length - 1 === 4",
        timeout=30_000,
    )
    table = page.locator("#qs-sweep-table").inner_text()
    assert sorted(expected, key=table.index) == expected, table  # the page lists them best first
    assert table.count("finished") == 4 and "lora.rank" in table and "best eval loss" in table
    assert f"Best: {expected[0]}" in summary.inner_text()
    legend = (
        "ids => { const t = [...document.querySelectorAll('#qs-sweep-loss .legendtext')].map(e => e.textContent);"
        " return ids.every(id => t.includes(id + ' · loss') && t.includes(id + ' · eval loss')); }"
    )
    page.wait_for_function(legend, arg=expected, timeout=20_000)  # every run's curves overlaid
    shoot(page, "16-sweep-ranked")

    page.locator("#qs-sweep-metric input").click()  # ranked again by another metric the runs record
    page.get_by_role("option", name="final train loss").click()
    page.locator("#qs-sweep-summary").get_by_text("Ranked by final train loss").wait_for(timeout=30_000)


def test_cancelling_a_sweep_from_compare_cancels_its_queued_runs(page, studio):
    page.get_by_role("tab", name="Train").click()
    _open_sweep_panel(page)
    page.locator("#qs-sweep-axes textarea").fill("lora.rank = 4, 8, 16")  # the form's runs train for a long time
    page.locator("#qs-sweep-queue").click()
    page.locator("#qs-sweep-message").get_by_text("3 runs").wait_for(timeout=60_000)
    page.get_by_role("tab", name="Compare runs").click()
    page.locator("#qs-sweep-table", has_text="browser-r16").wait_for(timeout=30_000)  # the newest sweep is shown
    page.locator("#qs-sweep-cancel").click()
    status = page.locator("#qs-sweep-status")
    status.get_by_text("Cancelled 2 queued runs").wait_for(timeout=30_000)
    assert "is still training" in status.inner_text()
    page.locator("#qs-sweep-table", has_text="cancelled before it started").wait_for(timeout=30_000)
    page.locator("#qs-sweep-abort-running input").check()
    page.locator("#qs-sweep-cancel").click()
    status.get_by_text("to checkpoint and stop").wait_for(timeout=30_000)
    page.locator("#qs-sweep-summary").get_by_text("3 of 3 runs have ended").wait_for(timeout=180_000)
    marks = (studio.root / "runs").glob("browser-r*/sweep.json")
    states = sorted(json.loads((mark.parent / "status.json").read_text())["state"] for mark in marks)
    assert states == ["aborted", "cancelled", "cancelled"]
