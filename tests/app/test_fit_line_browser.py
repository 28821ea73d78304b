"""Will it fit, how long, in a real Chromium: the fit line above Start follows the batch size; Measure speed
fills the time line."""

import re

import pytest

from app.server import build_page
from studio.api import Studio
from studio.config import RunConfig
from tests.support.form_driver import reveal, set_value

NEEDED = re.compile(r"about ([\d.]+) (MiB|GiB)")


@pytest.fixture(scope="module")
def layout(studio):
    return build_page(Studio("runs"), RunConfig.from_yaml(studio.config_file))


@pytest.fixture(scope="module")
def page(open_page):
    return open_page("Train")


def _needed_mib(text: str) -> float:
    number, unit = NEEDED.search(text).groups()
    return float(number) * (1024 if unit == "GiB" else 1)


def _shown_need(page) -> str:
    return page.evaluate("() => document.querySelector('#qs-fit').innerText.match(/about [\\d.]+ (MiB|GiB)/)?.[0]")


def _wait_for_need(page, before: str, changed: bool = True) -> None:
    compare = "!==" if changed else "==="
    page.wait_for_function(
        f"before => document.querySelector('#qs-fit').innerText.match(/about [\\d.]+ (MiB|GiB)/)?.[0] {compare} before",
        arg=before,
        timeout=60_000,
    )


def test_the_fit_line_appears_and_follows_the_batch_size(page, layout, shoot):
    fit = page.locator("#qs-fit")
    fit.get_by_text("Memory:").wait_for(timeout=60_000)
    page.wait_for_function("() => /about [\\d.]+ (MiB|GiB)/.test(document.querySelector('#qs-fit').innerText)")
    assert "cpu: fits" in fit.inner_text() and "free" in fit.inner_text() and "to spare" in fit.inner_text()

    # padded batches: the batch size is the micro-batch (the tiny model's packed micro-batches differ by ~4 MiB,
    # less than the line's 0.01 GiB)
    controls = layout.page.form.controls
    reveal(page, controls["training.packing"].component)
    set_value(page, controls["training.packing"], False)
    page.wait_for_timeout(2000)  # the line redrawn for the padded run
    padded = _shown_need(page)
    batch = controls["training.batch_size"]
    reveal(page, batch.component)
    set_value(page, batch, 64)
    _wait_for_need(page, padded)
    assert _needed_mib(_shown_need(page)) > _needed_mib(padded)
    shoot(page, "fit-line-batch-64")

    set_value(page, batch, 2)  # and back
    _wait_for_need(page, padded, changed=False)


def test_measure_speed_fills_the_time_line(page, shoot):
    time_line = page.locator("#qs-time")
    time_line.get_by_text("Time:").wait_for(timeout=60_000)
    assert "Measure speed" in time_line.inner_text()  # no finished run like this one yet
    page.locator("#qs-measure-speed").click()
    time_line.get_by_text("speed measured").wait_for(timeout=90_000)
    assert re.search(r"about .+: \d+ steps, [\d,]+ tokens at [\d,]+ tokens/s", time_line.inner_text())
    shoot(page, "fit-line-measured")
