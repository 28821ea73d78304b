"""In every language but English no English is left on the page: every tab, every accordion, with a run training
and results shown (中文, Русский, 한국어 and 日本語, LlamaBoard's five with English).

What is allowed to stay as it is: model output and data (chat answers, dataset rows, the worker's log),
names of files, models, datasets and runs, config values (auto, bf16, cosine, ...), and technical terms.
"""

import re

import pytest

from studio.locales import LANGUAGES, template
from tests.support.page_text import english_left, english_words

TABS = ("tab_train", "tab_eval", "tab_chat", "tab_export", "tab_compare")


def _open_accordions(page) -> None:
    """Open every closed accordion of the current tab, one at a time (the page re-renders after each)."""
    for _ in range(20):
        closed = [h for h in page.locator("button.label-wrap:not(.open)").all() if h.is_visible()]
        if not closed:
            return
        closed[0].click()
        page.wait_for_timeout(300)


@pytest.mark.parametrize("lang", [code for code in LANGUAGES if code != "en"])
def test_no_english_is_left(browser, studio, shoot, lang):
    context = browser.new_context(viewport={"width": 1400, "height": 1100}, locale=lang)
    page = context.new_page()
    page.goto(studio.url)
    page.get_by_role("tab", name="Train").wait_for(timeout=60_000)
    page.get_by_text(LANGUAGES[lang], exact=True).click()
    page.get_by_role("tab", name=template("tab_train", lang)).wait_for(timeout=30_000)
    page.get_by_role("button", name=template("preview_dataset", lang)).click()
    page.locator("#qs-preview-table").wait_for(timeout=120_000)
    page.locator("#qs-start").click()
    page.locator("#qs-progress").get_by_text(template("state_running", lang)).wait_for(timeout=120_000)
    page.wait_for_timeout(4000)  # a few steps: charts, log, progress
    leftovers = set()
    for key in TABS:
        page.get_by_role("tab", name=template(key, lang), exact=True).click()
        page.wait_for_timeout(500)
        _open_accordions(page)
        leftovers |= english_left(page)
        shoot(page, f"11-{lang}-{key}")
    page.get_by_role("tab", name=template("tab_train", lang), exact=True).click()
    # values are the user's, except the ones the page words itself (the checkpoint to resume from)
    leftovers |= english_words([page.locator("#qs-checkpoint input").input_value()])
    page.locator("#qs-abort").click()
    page.locator("#qs-progress").get_by_text(template("state_aborted", lang)).wait_for(timeout=120_000)
    context.close()
    assert not leftovers, "\n".join(sorted(leftovers))


def test_the_chat_status_follows_a_language_switch(browser, studio):
    """What Chat said in English (model loaded, adapter refused) is said again in 中文 after the switch."""
    context = browser.new_context(viewport={"width": 1400, "height": 1100}, locale="en-US")
    page = context.new_page()
    page.goto(studio.url)
    page.get_by_role("tab", name="Chat", exact=True).click()
    status = page.locator("#qs-chat-status")
    page.locator("#qs-chat-load").click()
    # the model's "Loaded … in … s", not "No model loaded." shown before it (get_by_text ignores case)
    status.get_by_text(re.compile(r"^Loaded .* in [0-9.]+ s")).wait_for(timeout=120_000)
    page.get_by_text("中文", exact=True).click()
    status.get_by_text("已加载").wait_for(timeout=30_000)
    assert not english_words([status.inner_text()])
    page.locator("#qs-chat-load-adapter").click()  # no adapter chosen: refused, in the page's language
    status.get_by_text("错误").wait_for(timeout=30_000)
    page.get_by_text("English", exact=True).click()
    status.get_by_text("Error").wait_for(timeout=30_000)
    context.close()
