"""The preference path as a LlamaBoard user walks it, in a real Chromium: SFT, then DPO continuing that adapter
(the stage brings its recipe), Compare both (reward accuracy and margin as curves and rows), Evaluate the DPO
adapter against the base, then the same pages in 中文 with nothing left in English."""

import pytest
from playwright.sync_api import expect

from app.server import build_page
from studio.api import Studio
from studio.config import RunConfig
from tests.support.form_driver import reveal, set_value, start_and_finish, tick
from tests.support.page_text import english_left


@pytest.fixture(scope="module")
def layout(studio):
    return build_page(Studio("runs"), RunConfig.from_yaml(studio.config_file))


@pytest.fixture(scope="module")
def page(open_page):
    return open_page("Train", height=1200)


def _field(layout, path):
    return layout.page.form.controls[path]


def _train(page, layout, steps: int) -> str:
    """Start with the form as it is (at most `steps` steps); the run id once it has finished."""
    max_steps = _field(layout, "training.max_steps")
    reveal(page, max_steps.component)
    set_value(page, max_steps, str(steps))
    return start_and_finish(page)


def test_sft_then_dpo_then_compare_and_evaluate_in_english_and_chinese(page, layout, shoot):
    set_value(page, _field(layout, "name"), "auto")  # runs named after their stage and data
    sft = _train(page, layout, steps=4)
    assert sft.startswith("sft-alpaca_zh_demo")

    stage = _field(layout, "training.stage")
    set_value(page, stage, "dpo")
    note = page.locator("#qs-recipe-note")
    note.get_by_text("LLaMA-Factory's LoRA DPO values").wait_for(timeout=30_000)
    assert "dpo_zh_demo" in page.locator("#qs-field-data-datasets").inner_text()
    assert page.locator("#qs-field-training-learning_rate input").input_value() == "0.000005"
    set_value(page, _field(layout, "training.learning_rate"), "0.005")
    adapter = _field(layout, "lora.init_adapter")
    reveal(page, adapter.component)
    adapter_box = page.locator("#qs-field-lora-init_adapter input")
    adapter_box.click()
    page.get_by_role("option", name=sft).click()  # the SFT run's adapter, offered in the list
    page.keyboard.press("Escape")
    shoot(page, "22-walk-dpo-recipe")
    dpo = _train(page, layout, steps=4)
    assert dpo.startswith("dpo-dpo_zh_demo")
    page.locator("#qs-margin-chart .js-plotly-plot").wait_for(timeout=30_000)

    page.get_by_role("tab", name="Compare runs").click()
    for run_id in (sft, dpo):
        tick(page.locator(f'#qs-compare-runs input[type=checkbox][name="{run_id}"]'))
    table = page.locator("#qs-compare-table")
    table.get_by_text("reward accuracy (training)").wait_for(timeout=30_000)
    text = table.inner_text()
    assert "reward margin (training)" in text and ("(eval)" in text or "(train)" in text)
    assert text.count("data.datasets") == 0  # the datasets row says it once
    page.locator("#qs-compare-extras .js-plotly-plot").wait_for(timeout=30_000)
    shoot(page, "23-walk-compare")

    page.get_by_role("tab", name="Evaluate & Predict").click()
    box = page.locator("#qs-eval-adapter input")
    box.fill(dpo)
    page.get_by_role("option", name=dpo).click()
    page.locator("#qs-eval-start").click()
    page.locator("#qs-eval-progress").get_by_text("finished").wait_for(timeout=300_000)
    metrics = page.locator("#qs-eval-metrics")  # its rows may be drawn a moment after the box says finished
    for word in ("accuracy", "margin", "difference"):
        expect(metrics).to_contain_text(word, use_inner_text=True, timeout=30_000)
    shoot(page, "24-walk-evaluate")

    page.get_by_text("中文", exact=True).click()
    page.get_by_role("tab", name="训练").wait_for(timeout=30_000)
    leftovers = set()
    for tab, name in (("评估与预测", "evaluate"), ("运行对比", "compare"), ("训练", "train")):
        page.get_by_role("tab", name=tab, exact=True).click()
        leftovers |= english_left(page)  # tables and charts redraw in Chinese
        shoot(page, f"25-walk-chinese-{name}")
    page.get_by_text("English", exact=True).click()
    assert not leftovers, "\n".join(sorted(leftovers))
