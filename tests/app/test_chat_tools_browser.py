"""Tools and thinking in the Chat tab, in a real headless Chromium, with a tiny model taught one tool conversation
(tests/support/tool_model.py): both panes think in a folded block, call get_weather on a card, take the tool's
result as an observation and answer from it."""

import json
import re

import pytest
from playwright.sync_api import expect

from tests.support import make_adapter
from tests.support.tool_model import ANSWER, CALL_THOUGHT, OBSERVATION, QUESTION, TEMPLATE, TOOLS

PANES = ("#qs-chat-base", "#qs-chat-adapter-answers")


@pytest.fixture(scope="module")
def page(open_page):
    return open_page("Chat")


@pytest.fixture(scope="module")
def faint_adapter(tmp_path_factory, tool_model_dir):
    """An adapter too weak to change greedy answers: the adapter pane answers as the base does."""
    return make_adapter(tool_model_dir, tmp_path_factory.mktemp("adapters") / "faint", seed=4, scale=1e-4)


def _choose(page, element_id: str, value: str) -> None:
    field = page.locator(f"#{element_id} input")
    field.click()
    field.fill(value)
    field.press("Enter")


def _status(page, pattern: str) -> None:
    page.locator("#qs-chat-status").get_by_text(re.compile(pattern)).wait_for(timeout=90_000)


def _folded(pane, thought: str) -> bool:
    """Whether the pane holds a thought under its title, folded: its text not shown (Gradio leaves a folded block's
    text out, or inert while it folds) rather than open."""
    titled = pane.get_by_text("💭 Thinking").count() > 0
    return titled and pane.get_by_text(thought).count() == pane.locator("[inert]").get_by_text(thought).count()


def _wait_until_answered(page) -> None:
    """Until the Send handler has ended: the message box emptied by the answer's first update (which comes after
    Send is greyed) and Send usable again. Send alone can still be enabled right after the click, before the
    server has greyed it."""
    page.wait_for_function(
        "() => document.querySelector('#qs-chat-prompt textarea').value === ''"
        " && !document.querySelector('#qs-chat-send').disabled",
        timeout=120_000,
    )


def test_the_thinking_switch_says_why_it_is_off_until_a_thinking_template_is_loaded(page, tool_model_dir):
    page.get_by_role("tab", name="Chat", exact=True).click()
    page.locator("#qs-chat-tools-box").get_by_text("Tools and thinking").click()
    thinking = page.locator("#qs-chat-thinking")
    assert thinking.locator("input[type=checkbox]").is_disabled()
    assert "Load a model first" in thinking.inner_text()
    _choose(page, "qs-field-model-name_or_path", str(tool_model_dir))
    page.wait_for_timeout(1000)  # a model's recipe, if any, fills in first
    _choose(page, "qs-field-model-chat_template", TEMPLATE)
    page.locator("#qs-chat-load").click()
    _status(page, r"^Loaded .* in [0-9.]+ s")
    thinking.get_by_text("The chat template qwen3 thinks").wait_for(timeout=30_000)
    assert thinking.locator("input[type=checkbox]").is_enabled() and thinking.locator("input").is_checked()


def test_a_call_card_in_both_panes_then_the_tools_result_then_the_answer(page, faint_adapter, shoot):
    _choose(page, "qs-chat-adapter", str(faint_adapter))
    page.locator("#qs-chat-load-adapter").click()
    _status(page, r"Adapter .* loaded onto")
    page.locator("#qs-chat-tools textarea").fill(json.dumps(TOOLS, indent=2))
    page.get_by_text("Generation settings").click()
    page.locator("#qs-field-generation-max_new_tokens").locator("input, textarea").first.fill("160")

    page.locator("#qs-chat-prompt textarea").fill(QUESTION)
    page.locator("#qs-chat-send").click()
    _wait_until_answered(page)
    for pane in map(page.locator, PANES):
        pane.get_by_text("🛠️ Calls get_weather").wait_for(timeout=30_000)
        assert '"city": "Paris"' in pane.inner_text()  # the call's arguments, as JSON, on its card
        assert _folded(pane, CALL_THOUGHT)
        assert "<tool_call>" not in pane.inner_text()
    # the next message answers the call (set by a step of its own after the answer)
    expect(page.locator("#qs-chat-as-result input")).to_be_checked(timeout=30_000)
    shoot(page, "30-chat-tool-call-cards")

    page.locator(PANES[0]).get_by_text("💭 Thinking").first.click()  # a folded thought opens on a click
    page.locator(PANES[0]).get_by_text(CALL_THOUGHT).wait_for(timeout=10_000)
    assert not _folded(page.locator(PANES[0]), CALL_THOUGHT) and _folded(page.locator(PANES[1]), CALL_THOUGHT)

    page.locator("#qs-chat-prompt textarea").fill(OBSERVATION)
    page.locator("#qs-chat-send").click()
    _wait_until_answered(page)
    for pane in map(page.locator, PANES):
        pane.get_by_text(ANSWER).wait_for(timeout=30_000)
        assert "🔧 Tool result" in pane.inner_text()
        assert pane.get_by_text("💭 Thinking").count() == 2
    # a plain answer asks no tool's result
    expect(page.locator("#qs-chat-as-result input")).not_to_be_checked(timeout=30_000)
    assert "Error" not in page.locator("#qs-chat-status").inner_text()
    shoot(page, "31-chat-tool-result-answered")


def test_tools_that_are_no_function_schemas_are_refused_by_name(page):
    before = page.locator(PANES[0]).inner_text()
    page.locator("#qs-chat-tools textarea").fill('[{"name": "get weather"}]')
    page.locator("#qs-chat-prompt textarea").fill("Again?")
    page.locator("#qs-chat-send").click()
    _status(page, r'Tool 1: "name" must be a function name')
    assert page.locator(PANES[0]).inner_text() == before  # nothing asked, nothing added
    assert page.locator("#qs-chat-prompt textarea").input_value() == "Again?"
