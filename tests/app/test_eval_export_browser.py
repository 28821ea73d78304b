"""Evaluate & Predict and Export in a real headless Chromium, with the tiny model and a fixture adapter."""

import pytest


@pytest.fixture(scope="module")
def page(open_page):
    return open_page("Evaluate & Predict")


def _choose_adapter(page, elem_id, path):
    box = page.locator(f"#{elem_id} input")
    box.fill(str(path))
    box.press("Enter")


def test_evaluate_base_vs_adapter(page, strong_adapter, shoot):
    page.get_by_role("tab", name="Evaluate & Predict").click()
    _choose_adapter(page, "qs-eval-adapter", strong_adapter)
    page.locator("#qs-eval-start").click()
    page.locator("#qs-eval-progress").get_by_text("finished").wait_for(timeout=120_000)
    table = page.locator("#qs-eval-metrics").inner_text()
    assert "rouge-l" in table and "difference" in table and "strong" in table
    assert "prediction" in page.locator("#qs-eval-samples").inner_text()
    shoot(page, "08-evaluate")


def test_export_merges_and_checks(page, strong_adapter, shoot):
    page.get_by_role("tab", name="Export").click()
    _choose_adapter(page, "qs-export-adapter", strong_adapter)
    page.locator("#qs-export-start").click()
    page.locator("#qs-export-result").get_by_text("reload check").wait_for(timeout=120_000)
    assert "finished" in page.locator("#qs-export-result").inner_text()
    shoot(page, "09-export")
