"""Compare runs and GGUF export in a real headless Chromium: three real runs (one killed), the tiny model."""

import os
import shutil

import pytest

from tests.support.form_driver import tick
from tests.support.page_text import english_left


@pytest.fixture(scope="module", autouse=True)
def offline_hub():
    """The server sees no Hub whatever this machine's network: the upload button must say why it cannot."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield


@pytest.fixture(scope="module")
def page(open_page, studio, three_runs):
    runs_dir, ids = three_runs
    for run_id in ids.values():  # run folders are self-contained: copies are the same runs
        shutil.copytree(runs_dir / run_id, studio.root / "runs" / run_id)
    return open_page("Compare runs", height=1400)


def _tick_all(page, ids):
    """Every run ticked (those ticked already stay ticked) and the table showing them."""
    page.get_by_role("tab", name="Compare runs").click()
    runs = page.locator("#qs-compare-runs")
    for run_id in ids.values():
        tick(runs.locator(f'input[type=checkbox][name="{run_id}"]'))  # each box is named by its choice
    script = "ids => ids.every(id => (document.querySelector('#qs-compare-table') || {}).innerText?.includes(id))"
    page.wait_for_function(script, arg=list(ids.values()), timeout=30_000)


def _open(page, run_id, action):
    """Click the `action` cell ("open in Chat" / "open in Evaluate") in the run's column of the table."""
    headers = [text.strip() for text in page.locator("#qs-compare-table thead th").all_inner_texts()]
    column = headers.index(run_id)
    row = page.locator(
        "#qs-compare-table .virtual-row", has_text=action
    ).first  # Gradio draws the body as a virtual list
    row.locator(".body-cell").nth(column).click()


def test_three_runs_side_by_side(page, three_runs, shoot):
    _, ids = three_runs
    _tick_all(page, ids)
    table = page.locator("#qs-compare-table").inner_text()
    assert "failed" in table and "finished" in table and "lora.rank" in table and "BLEU-4" in table
    assert "SIGKILL" in table and table.count("open in Chat") == 2  # the failed run has no adapter to open
    watched = page.locator("#qs-compare-watched").inner_text()  # the runs' answers to the same prompts
    assert "Watched answers" in watched and f"{ids['small']} (step" in watched
    wanted = [f"{run_id} · loss" for run_id in ids.values()] + [f"{ids['small']} · eval loss"]
    legend = (
        "ids => { const t = [...document.querySelectorAll('#qs-compare-loss .legendtext')].map(e => e.textContent);"
        " return ids.every(id => t.includes(id)); }"
    )
    page.wait_for_function(legend, arg=wanted, timeout=20_000)  # plotly draws after the table is shown
    page.locator("#qs-compare-axis").get_by_text("tokens", exact=True).click()
    page.locator("#qs-compare-loss .xtitle", has_text="tokens").wait_for(timeout=20_000)
    shoot(page, "12-compare-runs")


def _shows_adapter(page, elem_id, studio, run_id):
    """The tab's adapter list holds the run's adapter: by its name once the list knows it, else by its folder."""
    shown = [run_id, str(studio.root / "runs" / run_id / "adapter")]
    page.wait_for_function(
        f"names => names.includes((document.querySelector('#{elem_id} input') || {{}}).value)",
        arg=shown,
        timeout=20_000,
    )


def test_one_click_opens_a_runs_adapter_in_chat_and_in_evaluate(page, three_runs, studio):
    _, ids = three_runs
    _tick_all(page, ids)
    _open(page, ids["wide"], "open in Chat")
    page.locator("#qs-chat-adapter").wait_for(state="visible", timeout=20_000)
    _shows_adapter(page, "qs-chat-adapter", studio, ids["wide"])
    page.get_by_role("tab", name="Compare runs").click()
    _open(page, ids["small"], "open in Evaluate")
    _shows_adapter(page, "qs-eval-adapter", studio, ids["small"])
    assert page.get_by_role("tab", name="Evaluate & Predict").get_attribute("aria-selected") == "true"


def test_gguf_export_button_writes_and_checks_the_file(page, strong_adapter, studio, shoot):
    page.get_by_role("tab", name="Export", exact=True).click()
    box = page.locator("#qs-export-adapter input")
    box.fill(str(strong_adapter))
    box.press("Enter")
    choice = page.locator("#qs-field-export-format input")
    choice.click()
    choice.fill("gguf")
    choice.press("Enter")
    page.keyboard.press("Escape")
    page.locator("#qs-export-start").click()
    result = page.locator("#qs-export-result")
    result.get_by_text("reload check").wait_for(timeout=180_000)
    text = result.inner_text()
    assert "finished" in text and "expected from q8_0 rounding alone" in text and "read back equal" in text
    assert "Writing tensor 26/26" in text and (studio.root / "export" / "export-q8_0.gguf").is_file()
    shoot(page, "13-export-gguf")
    page.locator("#qs-hub").get_by_text("Upload to the Hugging Face Hub").click()
    page.locator("#qs-hub-repo input, #qs-hub-repo textarea").first.fill("me/tiny")
    page.locator("#qs-hub-token input").fill("hf_never_shown_anywhere")
    page.locator("#qs-hub-push").click()
    page.locator("#qs-hub-result").get_by_text("HF_HUB_OFFLINE").wait_for(timeout=30_000)
    assert "hf_never_shown_anywhere" not in page.locator("body").inner_text()
    assert "hf_never_shown_anywhere" not in (studio.root / "server.log").read_text()


def test_the_compare_tab_speaks_chinese(page, three_runs, shoot):
    _, ids = three_runs
    _tick_all(page, ids)
    page.get_by_text("中文", exact=True).click()
    page.get_by_role("tab", name="运行对比").click()
    page.locator("#qs-compare-table", has_text="在对话中打开").wait_for(timeout=30_000)
    # the charts redraw in Chinese too (english_left reads until they have); the killed worker's own message
    # stays as it is, like its log
    leftovers = english_left(page, allowed=lambda line: "SIGKILL" in line)
    shoot(page, "14-compare-chinese")
    page.get_by_text("English", exact=True).click()
    assert not leftovers, "\n".join(sorted(leftovers))
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
