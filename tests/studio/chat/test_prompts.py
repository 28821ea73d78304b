"""Chat prompts with tools and thinking are training's own ids, token for token, and answers are read back into
thought, calls and text as each template writes them."""

import copy
import json

import pytest

from studio.chat.prompts import Prompting, prompt_ids, template_info
from studio.chat.replies import reply_reader
from studio.chat.tools import ToolsError, check_tools, function_call
from studio.data.formats import with_system
from studio.data.tokenize import encode_conversation
from studio.modeling.chat_formats import FORMATS
from studio.modeling.chat_rendering import fill, function_calls_text
from studio.modeling.chat_templates import apply_chat_template_choice

TOOLS = json.dumps(
    [
        {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        }
    ]
)
CALL = function_call([("get_weather", json.dumps({"city": "Paris"}))])
TURNS = [
    {"role": "user", "content": "What is the weather in Paris?"},
    CALL,
    {"role": "observation", "content": '{"temperature": 21}'},
]
ANSWER = {"role": "assistant", "content": "It is 21 degrees."}
TOOL_FORMATS = ["chatml", "qwen2.5", "qwen3", "qwen3_5", "llama3", "mistral", "glm4", "gemma4", "lfm2", "phi4_mini"]


@pytest.fixture
def tokenizer(tiny_tokenizer):
    return copy.deepcopy(tiny_tokenizer)


@pytest.mark.parametrize("template", TOOL_FORMATS)
@pytest.mark.parametrize("thinking", [None, True, False])
def test_a_tool_conversation_asks_in_the_ids_training_gave_it(tokenizer, template, thinking):
    """The prompt for the answer after an observation is what training put before that answer: sft with the earlier
    answers as LLaMA-Factory's one-turn prompt has them (mask_history: no earlier thought, none added)."""
    trained_thinking = True if thinking is None else thinking
    apply_chat_template_choice(tokenizer, template, thinking=trained_thinking)
    trained = encode_conversation(tokenizer, with_system(TURNS + [ANSWER], "", TOOLS), 4096, mask_history=True)
    apply_chat_template_choice(tokenizer, template, thinking=True)  # loaded thinking; the switch decides
    asked = prompt_ids(tokenizer, TURNS, Prompting(check_tools(TOOLS), thinking))
    assert trained.input_ids[: len(asked)] == asked
    assert trained.labels[len(asked)] != -100 and trained.labels[len(asked) - 1] == -100  # the answer starts there
    assert "get_weather" in tokenizer.decode(asked) and '{"temperature": 21}' in tokenizer.decode(asked)


@pytest.mark.parametrize("template", ["chatml", "qwen2.5", "llama3"])
def test_without_thoughts_the_prompt_is_plain_sfts_too(tokenizer, template):
    apply_chat_template_choice(tokenizer, template)
    trained = encode_conversation(tokenizer, with_system(TURNS + [ANSWER], "Be brief.", TOOLS), 4096)
    system = [{"role": "system", "content": "Be brief."}]
    assert trained.input_ids[: len(asked := prompt_ids(tokenizer, system + TURNS, Prompting(TOOLS)))] == asked


def test_thinking_off_closes_the_prompt_with_the_empty_thought(tokenizer):
    apply_chat_template_choice(tokenizer, "qwen3", thinking=True)
    question = [{"role": "user", "content": "Hi"}]
    on, off = (prompt_ids(tokenizer, question, Prompting(thinking=t)) for t in (True, False))
    assert tokenizer.decode(off) == tokenizer.decode(on) + "<think>\n\n</think>\n\n"
    assert template_info(tokenizer) == template_info(tokenizer).__class__("qwen3", True, True, True)


def test_a_template_of_its_own_offers_no_tools(tokenizer):
    tokenizer.chat_template = tokenizer.chat_template + " "  # the tiny model's own, no named format
    info = template_info(tokenizer)
    assert (info.name, info.tools, info.reasoning) == ("own", False, False)
    with pytest.raises(ToolsError, match="has no tool format"):
        prompt_ids(tokenizer, TURNS[:1], Prompting(TOOLS))


def _answer_as_written(template: str, content: str) -> str:
    """What a model trained on this function_call turn writes: the turn's text up to where it stops."""
    fmt = FORMATS[template]
    text = "".join(p for p in fill(fmt.function, function_calls_text(fmt, content)) if isinstance(p, str))
    for word in fmt.stop_words:
        text = text.split(word)[0]
    return text


@pytest.mark.parametrize("template", TOOL_FORMATS)
def test_an_answer_that_calls_is_read_as_its_calls(tokenizer, template):
    apply_chat_template_choice(tokenizer, template, thinking=True)
    fmt = FORMATS[template]
    thought = fmt.thought_words[0] + "Look it up." + fmt.thought_words[1] if fmt.reasoning else ""
    written = _answer_as_written(template, thought + CALL["content"])
    reply = reply_reader(tokenizer, Prompting(TOOLS, True)).read(written, final=True)
    assert reply.error is None and [tuple(c) for c in reply.calls] == [("get_weather", '{"city": "Paris"}')]
    assert reply.text == "" and reply.thinking == ("Look it up." if fmt.reasoning else ""), written


def test_a_thought_streams_apart_and_a_call_is_held_back_until_closed(tokenizer):
    apply_chat_template_choice(tokenizer, "qwen3", thinking=True)
    reader = reply_reader(tokenizer, Prompting(TOOLS, True))
    whole = '<think>\nLook it up.\n</think>\n\nChecking.\n<tool_call>\n{"name": "get_weather", "arguments": {}}\n'
    seen = [reader.read(whole[:end], final=False) for end in range(1, len(whole) + 1)]
    assert all("<" not in r.thinking and "<" not in r.text for r in seen)  # no marker shown half written
    assert seen[14].thinking == "Look it" and seen[14].text == ""  # "<think>\nLook it"
    assert seen[-1].thinking == "Look it up." and seen[-1].text == "Checking." and seen[-1].calls == []
    ended = reader.read(whole, final=True)  # ran out of tokens inside the call: named, its text kept
    assert "Call 1 was never finished" in ended.error and ended.text.startswith("Checking.\n<tool_call>")
    closed = reader.read(whole + "</tool_call>", final=True)
    assert closed.text == "Checking." and closed.calls[0].name == "get_weather" and closed.error is None


def test_thinking_off_reads_the_answer_whole(tokenizer):
    apply_chat_template_choice(tokenizer, "qwen3", thinking=True)
    reply = reply_reader(tokenizer, Prompting(thinking=False)).read("Paris is sunny.", final=True)
    assert (reply.text, reply.thinking, reply.calls) == ("Paris is sunny.", "", [])


def test_thought_words_that_are_special_tokens_survive_decoding(tokenizer):
    """gpt-oss writes its thought between special tokens, which a plain decode drops; the reader keeps those its
    format is written with, and drops the rest."""
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|channel|>", "<|message|>", "<|end|>", "<|start|>"]})
    apply_chat_template_choice(tokenizer, "gpt_oss", thinking=True)
    opening, closing = FORMATS["gpt_oss"].thought_words
    ids = tokenizer.encode(opening + "Think." + closing + "Done.", add_special_tokens=False)
    assert tokenizer.decode(ids, skip_special_tokens=True) == "analysisThink.assistantfinalDone."  # markers lost
    reader = reply_reader(tokenizer, Prompting(thinking=True))
    reply = reader.read(reader.decode(ids + [tokenizer.pad_token_id]), final=True)
    assert (reply.thinking, reply.text) == ("Think.", "Done.")
