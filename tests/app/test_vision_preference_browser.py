"""DPO on pictures as a user walks it, in a real Chromium: the tiny Qwen2-VL model, stage dpo (the stage brings its
recipe and its text pairs), the demo pairs with pictures chosen instead, their preview (each picture beside its
prompt and both answers), a short run whose margin chart and log show a pair runs as two documents with the
prompt's picture, then Evaluate that adapter on its held-out pairs."""

import re

import pytest
from playwright.sync_api import expect

from app.server import build_page
from studio.api import Studio
from studio.config import RunConfig
from tests.app.conftest import serve_studio
from tests.support.form_driver import read_value, reveal, set_value, start_and_finish

PAIRS = "shapes_zh_dpo_demo"


@pytest.fixture(scope="module")
def studio(tmp_path_factory, tiny_vl_model_dir):
    with serve_studio(tmp_path_factory, tiny_vl_model_dir, **{"data.cutoff_len": "256"}) as served:
        yield served


@pytest.fixture(scope="module")
def layout(studio):
    return build_page(Studio("runs"), RunConfig.from_yaml(studio.config_file))


@pytest.fixture(scope="module")
def page(open_page):
    return open_page("Train", height=1200)


def _set(page, layout, path, value):
    control = layout.page.form.controls[path]
    reveal(page, control.component)
    set_value(page, control, value)


def test_dpo_on_pictures_previews_trains_and_evaluates(page, layout, tiny_vl_model_dir, shoot):
    model = layout.page.form.controls["model.name_or_path"]  # the served form names it already: picked again
    _set(page, layout, "model.name_or_path", str(tiny_vl_model_dir))
    assert read_value(page, model) == str(tiny_vl_model_dir)
    _choose_stage_and_pairs(page, layout)
    _preview(page, shoot)
    run_id = _train(page, layout, shoot)
    _evaluate(page, run_id, shoot)


def _choose_stage_and_pairs(page, layout):
    _set(page, layout, "training.stage", "dpo")
    page.locator("#qs-recipe-note").get_by_text("LLaMA-Factory's LoRA DPO values").wait_for(timeout=30_000)
    datasets = page.locator("#qs-field-data-datasets")
    # the SFT demo cannot train DPO: the recipe's text pairs replace it, and the user swaps in the pairs with pictures
    text_pairs = datasets.locator(".token").filter(has=page.locator("span:text-is('dpo_zh_demo')"))
    text_pairs.wait_for(timeout=30_000)
    text_pairs.locator(".token-remove").click()
    _set(page, layout, "data.datasets", [PAIRS])
    assert read_value(page, layout.page.form.controls["data.datasets"]) == [PAIRS]


def _preview(page, shoot):
    page.get_by_role("button", name="Preview dataset", exact=True).click()
    pictures = page.locator("#qs-preview-pictures")
    pictures.locator("img").first.wait_for(timeout=120_000)
    assert pictures.locator("img").count() >= 2
    assert pictures.locator("img").first.get_attribute("src").startswith("data:image/png;base64,")
    # the first pair: its picture beside the prompt and both answers, each named
    first = pictures.locator(".qs-picture-row").first.inner_text()
    for text in ("图中有几个蓝色的圆？", "chosen: 图中有3个蓝色的圆。", "rejected: 图中有1个蓝色的圆。"):
        assert text in first, first
    summary = page.locator("#qs-preview")
    summary.get_by_text("tokens: median").wait_for(timeout=60_000)  # counted with the picture tokens
    assert "preference pairs" in summary.inner_text()
    assert "⚠" not in summary.inner_text()  # DPO can use it: no stage problem said
    shoot(page, "43-picture-pairs-preview")


def _train(page, layout, shoot) -> str:
    for path, value in (
        ("data.max_samples", "10"),
        ("training.learning_rate", "0.005"),
        ("training.gradient_accumulation_steps", "2"),
        ("training.logging_steps", "1"),
        ("training.max_steps", "3"),
    ):
        _set(page, layout, path, value)
    run_id = start_and_finish(page)
    # "finished" can be shown before the charts of the last steps are drawn, and the titles name "margin" and
    # "accuracy" on an empty chart too: wait for the legends' own entries
    for chart, entries in (("margin", ("margin (train)", "accuracy (train)")), ("rewards", ("chosen (train)",))):
        page.wait_for_function(
            "([chart, entries]) => { const names = [...document.querySelectorAll(`#qs-${chart}-chart .legendtext`)]"
            ".map(e => e.textContent); return entries.every(entry => names.includes(entry)); }",
            arg=[chart, list(entries)],
            timeout=60_000,
        )
    shared = re.compile("Pairs: prompt and any pictures it shows run with each answer, as two documents")
    expect(page.locator("#qs-log textarea")).to_have_value(shared, timeout=30_000)
    shoot(page, "44-picture-pairs-run")
    return run_id


def _evaluate(page, run_id, shoot):
    page.get_by_role("tab", name="Evaluate & Predict").click()
    page.locator("#qs-eval-adapter input").fill(run_id)
    page.get_by_role("option", name=run_id).click()
    page.locator("#qs-eval-start").click()
    page.locator("#qs-eval-progress").get_by_text("finished").wait_for(timeout=300_000)
    metrics = page.locator("#qs-eval-metrics")  # its rows may be drawn a moment after the box says finished
    for row in ("reward_accuracy", "reward_margin", "rewards_chosen", "difference"):  # the pairs, pictures and all
        expect(metrics).to_contain_text(row, use_inner_text=True, timeout=30_000)
    assert "Preference pairs: accuracy and margin" in page.locator("#qs-eval-progress").inner_text()
    shoot(page, "45-picture-pairs-evaluate")
