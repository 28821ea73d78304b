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
    assert "exact_match" in table and "accuracy" in table  # the task metrics, beside BLEU/ROUGE
    samples = page.locator("#qs-eval-samples").inner_text()
    # sorted by the change in the first task metric, worst first
    assert "prediction" in samples and "change" in samples and "strong · exact_match" in samples
    downloads = page.locator("#qs-eval-downloads").inner_text().replace("\n", "")
    assert "generated_predictions.jsonl" in downloads and "generated_predictions.csv" in downloads
    shoot(page, "08-evaluate")


def test_the_demo_benchmark_shows_base_and_adapter_accuracy_per_subject(page, strong_adapter, shoot):
    page.get_by_role("tab", name="Evaluate & Predict").click()
    _choose_adapter(page, "qs-eval-adapter", strong_adapter)
    benchmarks = page.locator("#qs-field-evaluation-benchmarks input")
    benchmarks.click()
    benchmarks.fill("ceval_zh_demo")
    benchmarks.press("Enter")
    page.keyboard.press("Escape")
    page.locator(
        "#qs-field-evaluation-benchmark_limit textarea, #qs-field-evaluation-benchmark_limit input"
    ).first.fill("4")
    held_out = page.locator("#qs-field-evaluation-held_out input[type=checkbox]")
    if held_out.is_checked():
        held_out.click()
    page.locator("#qs-eval-start").click()
    page.locator("#qs-eval-metrics").get_by_text("ceval_zh_demo · acc", exact=True).wait_for(timeout=300_000)
    table = page.locator("#qs-eval-metrics").inner_text()
    for row in ("ceval_zh_demo · acc", "小学数学 (elementary math) · acc", "中国地理 (Chinese geography) · acc"):
        assert row in table
    assert "strong" in table and "difference" in table and "rouge-l" not in table
    shoot(page, "08b-evaluate-benchmark")
    held_out.click()  # as the next test expects the tab
    benchmarks_box = page.locator("#qs-field-evaluation-benchmarks")
    benchmarks_box.locator(".token .token-remove, .token button").first.click()


def test_export_merges_and_checks(page, strong_adapter, shoot):
    page.get_by_role("tab", name="Export").click()
    _choose_adapter(page, "qs-export-adapter", strong_adapter)
    page.locator("#qs-export-start").click()
    page.locator("#qs-export-result").get_by_text("reload check").wait_for(timeout=120_000)
    assert "finished" in page.locator("#qs-export-result").inner_text()
    shoot(page, "09-export")
