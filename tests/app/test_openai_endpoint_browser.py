"""The Chat tab's OpenAI-compatible API in a real Chromium: off by default, switched on, it answers OpenAI's own
client from two adapters in turn, with the page's model (no second copy), while the page itself chats."""

from __future__ import annotations

import re
import threading
import time

import httpx
import openai
import pytest

from studio.chat import ChatEngine
from studio.config import GenerationConfig, ModelConfig, QuantizationConfig

QUESTION = [{"role": "user", "content": "你是谁？"}]
GREEDY = GenerationConfig(temperature=0, max_new_tokens=12, repetition_penalty=1.0, top_k=0)


@pytest.fixture(scope="module")
def page(open_page):
    return open_page("Chat")


@pytest.fixture(scope="module")
def expected(tiny_model_dir, strong_adapter, second_adapter):
    """Each model's greedy answer, from an engine of the test's own process."""
    engine = ChatEngine()
    engine.load(ModelConfig(name_or_path=str(tiny_model_dir)), QuantizationConfig(method="none"))
    engine.load_adapter(str(strong_adapter), "strong")
    engine.load_adapter(str(second_adapter), "second")
    answers = {name: engine.answer(QUESTION, name, GREEDY).text for name in ("strong", "second")}
    engine.unload()
    return answers


def _load_adapter(page, path) -> None:
    adapter_input = page.locator("#qs-chat-adapter input")
    adapter_input.fill(str(path))
    adapter_input.press("Enter")
    page.locator("#qs-chat-load-adapter").click()
    page.locator("#qs-chat-status").get_by_text(re.compile(rf"Adapter \*?\*?{path.name}")).wait_for(timeout=60_000)


def test_switched_on_it_answers_two_adapters_in_turn_while_the_page_chats(
    page, studio, strong_adapter, second_adapter, expected, shoot
):
    api = f"{studio.url}v1"
    assert httpx.get(f"{api}/models").status_code == 503  # off until switched on
    page.get_by_role("tab", name="Chat").click()
    page.locator("#qs-chat-load").click()
    page.locator("#qs-chat-status").get_by_text(re.compile(r"^Loaded .* in [0-9.]+ s")).wait_for(timeout=60_000)
    _load_adapter(page, strong_adapter)
    _load_adapter(page, second_adapter)

    page.locator("#qs-chat-api-box").get_by_text("OpenAI-compatible API").click()
    page.locator("#qs-chat-api input").check()
    info = page.locator("#qs-chat-api-info")
    info.get_by_text(re.compile("On at")).wait_for(timeout=30_000)
    assert f"{api}" in info.inner_text() and all(name in info.inner_text() for name in ("tiny-qwen2", "strong"))
    client = openai.OpenAI(base_url=api, api_key="unused", max_retries=0, timeout=300)
    assert [model.id for model in client.models.list()] == ["tiny-qwen2", "strong", "second"]
    shoot(page, "openai-endpoint-switched-on")

    # the page asks for a long answer, and the client asks each adapter in turn meanwhile
    page.locator("#qs-chat-adapter input").fill(str(second_adapter))
    page.locator("#qs-chat-adapter input").press("Enter")
    _long_answers(page)
    page.locator("#qs-chat-prompt textarea").fill("你好")
    page.locator("#qs-chat-send").click()
    page.wait_for_function("() => document.querySelector('#qs-chat-send').disabled", timeout=30_000)
    replies, answered = {}, []
    for model in ("strong", "second", "strong"):
        reply = client.chat.completions.create(model=model, messages=QUESTION, temperature=0, max_tokens=12)
        assert reply.choices[0].message.content == expected[model]
        replies[model] = reply.choices[0].message.content
        answered.append(time.time())
    assert replies["strong"] != replies["second"]
    page.wait_for_function("() => !document.querySelector('#qs-chat-send').disabled", timeout=300_000)
    assert "你好" in page.locator("#qs-chat-adapter-answers").inner_text()
    assert "Unexpected error" not in page.locator("#qs-chat-status").inner_text()
    shoot(page, "openai-endpoint-while-chatting")


def test_streaming_and_a_second_page_answer_together(page, studio, expected, open_page):
    """Two clients at once, one streaming, while another page chats: each gets its own model's answer whole."""
    api = f"{studio.url}v1"
    other = open_page("Chat")
    other.get_by_role("tab", name="Chat").click()
    other.locator("#qs-chat-api-box").get_by_text("OpenAI-compatible API").click()
    other.locator("#qs-chat-api-info").get_by_text(re.compile("On at")).wait_for(timeout=30_000)
    assert other.locator("#qs-chat-api input").is_checked()  # the switch is the server's, not the page's
    client = openai.OpenAI(base_url=api, api_key="unused", max_retries=0, timeout=300)
    results = {}

    def stream() -> None:
        chunks = client.chat.completions.create(
            model="second", messages=QUESTION, temperature=0, max_tokens=12, stream=True
        )
        results["second"] = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    thread = threading.Thread(target=stream)
    thread.start()
    reply = client.chat.completions.create(model="strong", messages=QUESTION, temperature=0, max_tokens=12)
    thread.join(timeout=300)
    assert reply.choices[0].message.content == expected["strong"] and results["second"] == expected["second"]
    page.locator("#qs-chat-api input").uncheck()
    page.locator("#qs-chat-api-info").get_by_text(re.compile("^Off")).wait_for(timeout=30_000)
    assert httpx.get(f"{api}/models").status_code == 503


def _long_answers(page) -> None:
    """The page's answers 300 tokens long (several seconds on a CPU), so the client's requests meet one."""
    box = page.locator("#qs-field-generation-max_new_tokens input").first
    if not box.is_visible():
        header = page.locator("button.label-wrap").filter(has=page.locator("span:text-is('Generation settings')"))
        header.first.click()
    box.fill("300")
    box.press("Tab")
