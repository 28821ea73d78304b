"""A request read: its messages as training reads an OpenAI-format row, its sampling with OpenAI's defaults, and
what is refused by name."""

from __future__ import annotations

import pytest

from studio.openai_api.errors import ApiError
from studio.openai_api.prompts import chat_prompt, completion_prompt
from studio.openai_api.requests import Sampling, chat_sampling, completion_sampling, parsed
from studio.openai_api.schema import ChatRequest, CompletionRequest


def _chat(**fields) -> ChatRequest:
    return ChatRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "Hi"}], **fields})


def test_plain_messages_are_asked_through_the_chat_template_as_the_chat_tab_asks(tiny_tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    text = tiny_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    prompt = chat_prompt(tiny_tokenizer, _chat(messages=messages))
    assert prompt.ids == tiny_tokenizer.encode(text, add_special_tokens=False) and prompt.prompting is None
    developer = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
    ]
    assert chat_prompt(tiny_tokenizer, _chat(messages=developer)).ids == prompt.ids  # OpenAI's newer spellings


def test_tool_calls_given_either_way_ask_the_same_prompt(tiny_tokenizer):
    def history(arguments) -> list[dict]:
        call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}
        return [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "Sunny"},
        ]

    as_text = chat_prompt(tiny_tokenizer, _chat(messages=history('{"city": "Paris"}')))
    as_object = chat_prompt(tiny_tokenizer, _chat(messages=history({"city": "Paris"})))
    assert as_text.ids == as_object.ids and as_text.prompting is not None  # tool turns: asked as training asks
    assert "Action: get_weather" in tiny_tokenizer.decode(as_text.ids)  # chatml writes calls the default way


def test_sampling_takes_openai_defaults_and_names_what_it_refuses():
    assert chat_sampling(_chat()) == Sampling(max_tokens=None)  # temperature 1, top_p 1, no top-k, no penalty
    given = _chat(temperature=0, top_p=0.5, max_completion_tokens=9, stop="##", seed=3, extra=1)
    assert chat_sampling(given) == Sampling(9, 0, 0.5, 0, 1.0, 3, ("##",))
    assert completion_sampling(CompletionRequest(model="m", prompt="x")).max_tokens == 16
    for fields, key in (
        ({"stop": ["a", "b", "c", "d", "e"]}, "openai.too_many_stops"),
        ({"n": 3}, "openai.one_choice"),
        ({"frequency_penalty": 0.1}, "openai.penalty_unsupported"),
        ({"logit_bias": {"42": 1.0}}, "openai.unsupported"),
        ({"top_logprobs": 2}, "openai.unsupported"),
    ):
        with pytest.raises(ApiError) as refused:
            chat_sampling(_chat(**fields))
        assert refused.value.message.key == key and refused.value.status == 400
    with pytest.raises(ApiError, match="echo is not supported"):
        completion_sampling(CompletionRequest(model="m", prompt="x", echo=True))


def test_one_prompt_per_completion_and_malformed_bodies_name_the_field(tiny_tokenizer):
    assert completion_prompt(tiny_tokenizer, CompletionRequest(model="m", prompt=["你好"])).ids
    with pytest.raises(ApiError, match="2 prompts given"):
        completion_prompt(tiny_tokenizer, CompletionRequest(model="m", prompt=["a", "b"]))
    with pytest.raises(ApiError) as refused:
        parsed(ChatRequest, b'{"model": "m", "messages": []}')
    assert refused.value.param == "messages" and "messages is not valid" in str(refused.value)
    with pytest.raises(ApiError, match="tool_choice .* is not supported"):
        chat_prompt(tiny_tokenizer, _chat(tool_choice={"type": "function", "function": {"name": "f"}}))
