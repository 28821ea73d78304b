"""The Chat tab's Engine box in a real headless Chromium: vllm shows vLLM's settings, and Load says why vLLM cannot
run on this machine and what does."""

import pytest
import torch

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="vLLM is refused here for want of a CUDA GPU")


@pytest.fixture(scope="module")
def page(open_page):
    return open_page("Chat")


def _choose_engine(page, name: str) -> None:
    field = page.locator("#qs-field-chat-engine input")
    field.click()
    field.fill(name)
    field.press("Enter")
    page.keyboard.press("Escape")


def test_choosing_vllm_shows_its_settings_and_load_says_what_runs_here(page):
    page.get_by_role("tab", name="Chat").click()
    rank = page.locator("#qs-field-chat-max_lora_rank")
    assert not rank.is_visible()  # hf, the default: nothing of vLLM's on the page
    _choose_engine(page, "vllm")
    rank.wait_for(state="visible", timeout=10_000)
    page.locator("#qs-chat-load").click()
    status = page.locator("#qs-chat-status")
    status.get_by_text("vLLM needs a CUDA GPU; chat.engine: hf runs here").wait_for(timeout=60_000)
    _choose_engine(page, "hf")
    rank.wait_for(state="hidden", timeout=10_000)
