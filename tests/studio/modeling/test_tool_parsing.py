"""Calls read back out of answers: every tool format's reader inverts the writer training uses, and an answer whose
call cannot be read says which call and why."""

import json

import pytest

from studio.modeling.tool_formats import TOOL_FORMATS
from studio.modeling.tool_parsing import parse_calls

CALLS = [
    ("get_weather", json.dumps({"city": "Paris", "days": 3})),
    ("add", json.dumps({"a": 1, "b": 2.5, "exact": True, "tags": ["x", "y"], "unit": {"name": "kg"}})),
]
ONE_CALL = {"glm4"}  # GLM-4 writes one call per turn (tool_formats refuses more)


def _same(parsed, calls) -> bool:
    return [(c.name, json.loads(c.arguments)) for c in parsed] == [(n, json.loads(a)) for n, a in calls]


@pytest.mark.parametrize("name", sorted(TOOL_FORMATS))
def test_every_format_reads_back_the_calls_it_writes(name):
    calls = CALLS[:1] if name in ONE_CALL else CALLS
    written = TOOL_FORMATS[name].calls(calls)
    parsed = parse_calls(name, written)
    assert parsed.error is None and _same(parsed.calls, calls), (written, parsed)
    assert parsed.text == "" and parsed.start is not None


@pytest.mark.parametrize("name", ["default", "qwen", "qwen3_5", "glm4_moe", "lfm2", "gemma4"])
def test_text_before_the_calls_is_the_answer(name):
    written = "Let me look that up.\n" + TOOL_FORMATS[name].calls(CALLS)
    parsed = parse_calls(name, written)
    assert parsed.text == "Let me look that up." and _same(parsed.calls, CALLS)
    assert written[: parsed.start].strip() == "Let me look that up."


@pytest.mark.parametrize("name", sorted(TOOL_FORMATS))
def test_a_plain_answer_is_no_call_and_no_error(name):
    for answer in ("Paris is sunny today.", "A line\nand another.", '{"weather": "sunny"}'):
        parsed = parse_calls(name, answer)
        assert (parsed.text, parsed.calls, parsed.error, parsed.start) == (answer, [], None, None)


@pytest.mark.parametrize(
    ("name", "answer", "said"),
    [
        (
            "qwen",
            '<tool_call>\n{"name": "get_weather", "arguments": {"city": }}\n</tool_call>',
            "Call 1: its arguments",
        ),
        ("qwen", '<tool_call>\n{"arguments": {}}\n</tool_call>', "Call 1 names no function"),
        ("qwen", '<tool_call>\n{"name": "a", "arguments": {}}\n</tool_call>\n<tool_call>\n{"name": "b"', "Call 2 was"),
        ("default", "Action: get_weather\nAction Input: {city: Paris}", "Call 1: its arguments are not JSON"),
        ("default", "Action: get_weather", "Call 1 was never finished (no Action Input:)"),
        ("llama3", '{"name": "get_weather", "parameters": {"city": "Paris"', "Call 1: its arguments are not JSON"),
        ("mistral", '[TOOL_CALLS][{"name": "get_weather", "arguments": ', "Call 1: its arguments are not JSON"),
        ("lfm2", "<|tool_call_start|>[get_weather(city=)]<|tool_call_end|>", "Call 1 is not written as"),
        ("qwen3_5", "<tool_call>\nget_weather(city='Paris')\n</tool_call>", "<function=NAME>"),
        ("gemma4", "<|tool_call>call:get_weather{city:Paris}<tool_call|>", "Call 1 is not written as"),
    ],
)
def test_a_call_that_cannot_be_read_is_named_and_its_text_kept(name, answer, said):
    parsed = parse_calls(name, answer)
    assert parsed.error is not None and said in parsed.error, parsed.error
    assert parsed.text == answer and parsed.start is not None


def test_a_format_without_tools_reads_text():
    assert parse_calls(None, "<tool_call>{}</tool_call>").text == "<tool_call>{}</tool_call>"
