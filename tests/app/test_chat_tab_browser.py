"""The Chat tab in a real headless Chromium: load model, load adapter, ask, both columns answer."""

import re

import pytest

COLUMN_TEXT = """(id) => {
  const bubbles = document.querySelectorAll('#' + id + ' .message-row, #' + id + ' [data-testid="bot"]');
  return Array.from(bubbles).map(b => b.innerText).join('\\n');
}"""


@pytest.fixture(scope="module")
def page(open_page):
    return open_page("Chat")


@pytest.fixture(scope="module")
def loaded(page, strong_adapter):
    """The Chat tab with the model and the adapter loaded, once for the module's tests (each may run alone)."""
    page.get_by_role("tab", name="Chat").click()
    page.locator("#qs-chat-load").click()
    page.locator("#qs-chat-status").get_by_text(re.compile(r"^Loaded .* in [0-9.]+ s")).wait_for(timeout=180_000)
    adapter_input = page.locator("#qs-chat-adapter input")
    adapter_input.fill(str(strong_adapter))
    adapter_input.press("Enter")
    page.locator("#qs-chat-load-adapter").click()
    page.locator("#qs-chat-status").get_by_text(re.compile(r"Adapter .* loaded onto")).wait_for(timeout=180_000)
    return page


def test_load_model_and_adapter_then_both_columns_answer(loaded, shoot):
    page = loaded
    page.locator("#qs-chat-prompt textarea").fill("你是谁？")
    page.locator("#qs-chat-send").click()
    page.locator("#qs-chat-adapter-answers").get_by_text("你是谁？").wait_for(timeout=180_000)
    page.get_by_text("tok/s").nth(1).wait_for(timeout=180_000)
    _wait_until_answered(page)
    base = page.locator("#qs-chat-base").inner_text()
    tuned = page.locator("#qs-chat-adapter-answers").inner_text()
    assert "你是谁？" in base and "你是谁？" in tuned
    assert len(tuned.replace("你是谁？", "").strip()) > 0
    assert "Unexpected error" not in page.locator("#qs-chat-status").inner_text()
    shoot(page, "07-chat-side-by-side")


def test_a_second_question_is_answered_too(loaded):
    """The engine is let go after an answer (it once stayed held by whichever Gradio thread ran the first)."""
    page = loaded
    answers = page.locator("#qs-chat-adapter-answers [data-testid='bot']")
    before = answers.count()
    page.locator("#qs-chat-prompt textarea").fill("你好")
    page.locator("#qs-chat-send").click()
    page.wait_for_function(  # this question's answer has begun (an earlier answer may hold 你好 too)
        "(n) => document.querySelectorAll(\"#qs-chat-adapter-answers [data-testid='bot']\").length > n",
        arg=before,
        timeout=180_000,
    )
    _wait_until_answered(page)
    assert "Unexpected error" not in page.locator("#qs-chat-status").inner_text()
    assert answers.count() == before + 1


def _wait_until_answered(page) -> None:
    """Until the Send handler has ended: Send stays greyed while the answer streams."""
    page.wait_for_function("() => !document.querySelector('#qs-chat-send').disabled", timeout=180_000)
