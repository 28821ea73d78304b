"""Reasoning templates: thoughts trained or removed as model.enable_thinking says, the empty thought where
LLaMA-Factory puts it (answer with thinking on, prompt with it off), and the chat template doing the same when it
prompts for an answer."""

import copy

import pytest

from studio.data.tokenize import IGNORE_INDEX, encode_conversation
from studio.modeling.chat_templates import apply_chat_template_choice, format_of

THOUGHT = "<think>\n先想一想。\n</think>\n\n"
TURNS = [
    {"role": "user", "content": "1+1=?"},
    {"role": "assistant", "content": THOUGHT + "2"},
    {"role": "user", "content": "谢谢"},
    {"role": "assistant", "content": "不客气"},
]


@pytest.fixture
def tokenizer(tiny_tokenizer):
    return copy.deepcopy(tiny_tokenizer)


def _trained(tokenizer, encoded) -> str:
    return tokenizer.decode([t for t, label in zip(encoded.input_ids, encoded.labels) if label != IGNORE_INDEX])


def _text(tokenizer, encoded) -> str:
    return tokenizer.decode(encoded.input_ids)


def test_thinking_on_trains_thoughts_and_an_empty_one_where_an_answer_has_none(tokenizer):
    apply_chat_template_choice(tokenizer, "qwen3", thinking=True)
    encoded = encode_conversation(tokenizer, TURNS, cutoff_len=4096)
    assert _trained(tokenizer, encoded) == THOUGHT + "2<|im_end|>\n" + "<think>\n\n</think>\n\n不客气<|im_end|>\n"


def test_thinking_off_removes_thoughts_and_closes_each_prompt_with_an_empty_one(tokenizer):
    apply_chat_template_choice(tokenizer, "qwen3", thinking=False)
    encoded = encode_conversation(tokenizer, TURNS, cutoff_len=4096)
    assert _trained(tokenizer, encoded) == "2<|im_end|>\n不客气<|im_end|>\n"
    assert "先想一想" not in _text(tokenizer, encoded)
    assert _text(tokenizer, encoded).count("<|im_start|>assistant\n<think>\n\n</think>\n\n") == 2  # masked


def test_a_nothink_template_leaves_answers_as_they_are(tokenizer):
    apply_chat_template_choice(tokenizer, "qwen3_nothink", thinking=False)
    encoded = encode_conversation(tokenizer, TURNS, cutoff_len=4096)
    assert _trained(tokenizer, encoded) == THOUGHT + "2<|im_end|>\n不客气<|im_end|>\n"


def test_glm4_7_writes_an_empty_thought_as_its_closing_word_alone(tokenizer):
    apply_chat_template_choice(tokenizer, "glm4_7", thinking=True)
    encoded = encode_conversation(tokenizer, TURNS[2:], cutoff_len=4096)
    assert _trained(tokenizer, encoded).startswith("</think>\n不客气")


def test_the_chat_template_follows_the_setting_and_a_per_call_override(tokenizer):
    ask = [*TURNS[:2], {"role": "user", "content": "再来"}]
    apply_chat_template_choice(tokenizer, "qwen3", thinking=False)
    assert format_of(tokenizer).thinking is False
    prompt = tokenizer.apply_chat_template(ask, tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n") and "先想一想" not in prompt
    thinking = tokenizer.apply_chat_template(ask, tokenize=False, add_generation_prompt=True, enable_thinking=True)
    assert thinking.endswith("<|im_start|>assistant\n") and "先想一想" in thinking
    apply_chat_template_choice(tokenizer, "qwen3", thinking=True)
    assert format_of(tokenizer).thinking is True
    assert tokenizer.apply_chat_template(ask, tokenize=False, add_generation_prompt=True) == thinking


def test_the_run_config_sets_thinking_when_the_tokenizer_loads(tiny_model_dir):
    from studio.config import ModelConfig
    from studio.modeling.loader import load_tokenizer

    config = ModelConfig(name_or_path=str(tiny_model_dir), chat_template="deepseekr1", enable_thinking=False)
    fmt = format_of(load_tokenizer(config, str(tiny_model_dir)))
    assert fmt.name == "deepseekr1" and fmt.thinking is False
