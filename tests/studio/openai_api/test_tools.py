"""Tools and thinking through the endpoint: offered as Chat offers them, read back as Chat reads them, answered in
OpenAI's shape (tool_calls, reasoning_content)."""

from __future__ import annotations

import json

from studio.chat.prompts import Prompting, prompt_ids
from studio.chat.tools import check_tools
from tests.studio.openai_api.conftest import CALL_QUESTION, GREEDY, QUESTION, THOUGHT, WEATHER


def test_tools_reach_the_prompt_as_chat_offers_them(api):
    client = api.client()
    plain = client.chat.completions.create(model="strong", messages=QUESTION, temperature=0, max_tokens=12)
    offered = client.chat.completions.create(
        model="strong", messages=QUESTION, temperature=0, max_tokens=12, tools=[WEATHER]
    )
    expected = prompt_ids(api.engine.tokenizer, QUESTION, Prompting(check_tools([WEATHER])))
    assert offered.usage.prompt_tokens == len(expected) > plain.usage.prompt_tokens + 50  # the tools described
    chat = api.engine.answer(QUESTION, "strong", GREEDY, tools=[WEATHER])
    assert offered.choices[0].message.content == chat.text
    none = client.chat.completions.create(
        model="strong", messages=QUESTION, temperature=0, max_tokens=12, tools=[WEATHER], tool_choice="none"
    )
    assert none.usage.prompt_tokens == plain.usage.prompt_tokens  # 'none': the tools are not offered at all


def test_a_call_comes_back_as_tool_calls_and_the_thought_apart(serve_endpoint, caller):
    client = serve_endpoint(over=caller).client()
    reply = client.chat.completions.create(
        model="caller", messages=CALL_QUESTION, tools=[WEATHER], temperature=0, max_tokens=120
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert choice.message.reasoning_content == THOUGHT  # vLLM's field, kept by the client as an extra
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_") and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}

    chunks = list(
        client.chat.completions.create(
            model="caller", messages=CALL_QUESTION, tools=[WEATHER], temperature=0, max_tokens=120, stream=True
        )
    )
    deltas = [chunk.choices[0].delta for chunk in chunks if chunk.choices]
    thought = "".join(getattr(delta, "reasoning_content", None) or "" for delta in deltas)
    calls = [call for delta in deltas for call in delta.tool_calls or []]
    assert thought == THOUGHT and not "".join(delta.content or "" for delta in deltas)
    assert [(c.index, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        (0, "get_weather", {"city": "Paris"})
    ]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_the_call_and_its_result_go_back_as_tool_turns(serve_endpoint, caller):
    """The client sends the assistant's tool_calls and the tool's result: they are asked as function_call and
    observation turns, as training has them, and the thinking switch is vLLM's chat_template_kwargs."""
    client = serve_endpoint(over=caller).client()
    arguments = '{"city": "Paris"}'
    history = [
        *CALL_QUESTION,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 °C"},
    ]
    turns = [
        *CALL_QUESTION,
        {"role": "function_call", "content": json.dumps([{"name": "get_weather", "arguments": {"city": "Paris"}}])},
        {"role": "observation", "content": "Sunny, 21 °C"},
    ]
    tools = check_tools([WEATHER])
    for thinking in (None, False):
        options = {} if thinking is None else {"extra_body": {"chat_template_kwargs": {"enable_thinking": thinking}}}
        reply = client.chat.completions.create(
            model="caller", messages=history, tools=[WEATHER], temperature=0, max_tokens=4, **options
        )
        expected = prompt_ids(caller.tokenizer, turns, Prompting(tools, thinking))
        assert reply.usage.prompt_tokens == len(expected)
    thinking_on = prompt_ids(caller.tokenizer, turns, Prompting(tools, None))
    assert len(expected) > len(thinking_on)  # thinking off: the prompt ends with the empty thought
