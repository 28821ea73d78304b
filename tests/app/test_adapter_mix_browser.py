"""Chat's "Combine adapters" in a real headless Chromium: two adapters loaded, combined, the combination answers."""

import re

import pytest


@pytest.fixture(scope="module")
def page(open_page):
    return open_page("Chat")


def _load_adapter(page, folder) -> None:
    adapter_input = page.locator("#qs-chat-adapter input")
    adapter_input.fill(str(folder))
    adapter_input.press("Enter")
    page.locator("#qs-chat-load-adapter").click()
    page.locator("#qs-chat-status").get_by_text(re.compile(rf"Adapter {folder.name} loaded onto")).wait_for(
        timeout=60_000
    )


def test_two_adapters_combined_answer_in_their_own_pane(page, strong_adapter, second_adapter, shoot):
    page.get_by_role("tab", name="Chat").click()
    page.locator("#qs-chat-load").click()
    page.locator("#qs-chat-status").get_by_text(re.compile(r"^Loaded .* in [0-9.]+ s")).wait_for(timeout=60_000)
    _load_adapter(page, strong_adapter)
    _load_adapter(page, second_adapter)
    page.locator("#qs-chat-mix").get_by_text("Combine adapters").click()
    picked = page.locator("#qs-chat-mix-adapters input")
    for name in ("strong", "second"):
        picked.click()
        page.get_by_role("option", name=name, exact=True).click()
    page.locator("#qs-chat-mix-weights textarea").fill("0.5, 0.5")
    page.locator("#qs-chat-mix-combine").click()
    page.locator("#qs-chat-status").get_by_text("Combination mix loaded").wait_for(timeout=60_000)
    assert "0.5 × strong + 0.5 × second (linear)" in page.locator("#qs-chat-status").inner_text()
    assert page.locator("#qs-chat-adapter input").input_value().startswith("mix")  # chosen for the adapter pane
    page.locator("#qs-chat-prompt textarea").fill("你是谁？")
    page.locator("#qs-chat-send").click()
    page.get_by_text("tok/s").nth(1).wait_for(timeout=60_000)
    page.wait_for_function("() => !document.querySelector('#qs-chat-send').disabled", timeout=120_000)
    mixed = page.locator("#qs-chat-adapter-answers").inner_text()
    assert "你是谁？" in mixed and len(mixed.replace("你是谁？", "").strip()) > 0
    assert "Error" not in page.locator("#qs-chat-status").inner_text()
    shoot(page, "07b-chat-combined-adapters")


def test_export_merges_the_combination_made_in_chat(page, studio):
    page.get_by_role("tab", name="Export").click()
    page.locator("#qs-export-adapter input").click()
    page.get_by_role("option", name=re.compile(r"^mix \(combination: 0\.5 × strong")).click()
    page.locator("#qs-export-start").click()
    page.locator("#qs-export-result .qs-finished").wait_for(timeout=120_000)
    assert "studio_combination.json" in page.locator("#qs-export-result").inner_text()
    assert '"weight": 0.5' in (studio.root / "export" / "studio_combination.json").read_text()
