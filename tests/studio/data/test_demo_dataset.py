import re

from studio.config import DataConfig
from studio.data.prepare import load_conversations, split_conversations
from studio.data.preview import preview_datasets
from studio.locales import in_language


def test_demo_set_is_large_varied_chinese_and_in_persona():
    [demo, identity] = load_conversations(DataConfig(datasets=["alpaca_zh_demo", "identity"]))
    assert len(demo.examples) >= 150 and len(identity.examples) >= 10
    prompts = {m[0]["content"] for m in demo.examples}
    assert len(prompts) >= 140  # varied, not one question repeated
    answers = [m[-1]["content"] for m in demo.examples]
    assert all(a.startswith("喵～") and a.endswith("🐾") for a in answers)
    assert sum(bool(re.search(r"[\u4e00-\u9fff]", a)) for a in answers) >= 150


def test_sharegpt_demo_is_multi_turn():
    [chat] = load_conversations(DataConfig(datasets=["sharegpt_zh_demo"]))
    assert all(len(m) >= 5 and m[0]["role"] == "system" for m in chat.examples)


def test_split_is_deterministic_and_disjoint():
    loaded = load_conversations(DataConfig())
    a, b = split_conversations(loaded, 0.1, seed=1), split_conversations(loaded, 0.1, seed=1)
    assert a.val == b.val and len(a.val) == round(171 * 0.1)
    assert not {str(m) for m in a.val} & {str(m) for m in a.train}


def test_preview_rows_counts_and_token_lengths(tiny_tokenizer):
    preview = preview_datasets(DataConfig(cutoff_len=64), rows=3, tokenizer=tiny_tokenizer)
    demo = preview.datasets[0]
    assert demo.num_usable == demo.num_rows >= 150 and len(demo.rows) == 3
    assert demo.tokens.min <= demo.tokens.median <= demo.tokens.max and len(demo.tokens.lengths) == demo.num_usable
    assert demo.tokens.truncated == sum(n > 64 for n in demo.tokens.lengths)
    assert "alpaca_zh_demo" in preview.to_text()


def test_preview_of_pairs_counts_prompt_and_answers_and_says_which_stage_cannot_use_them(tiny_tokenizer):
    config = DataConfig(datasets=["dpo_zh_demo", "text_zh_demo"], cutoff_len=64)
    pairs, text = preview_datasets(config, rows=2, tokenizer=tiny_tokenizer, stage="dpo").datasets
    assert set(pairs.parts) == {"prompt", "chosen", "rejected"} and pairs.stage_problem is None
    assert len(pairs.tokens.lengths) == pairs.num_usable == len(pairs.parts["chosen"].lengths)
    assert pairs.tokens.lengths == [  # as the pair is trained: the prompt and its longer answer
        p + max(c, r) for p, c, r in zip(*(pairs.parts[name].lengths for name in ("prompt", "chosen", "rejected")))
    ]
    assert text.tokens is not None and "cannot be used for DPO" in text.stage_problem
    assert (
        "不能用于DPO" in in_language(text.stage_problem, "zh")
        and "cannot be trained" in preview_datasets(config, stage="dpo").to_text()
    )


def test_preference_demo_prefers_the_persona_over_a_plain_answer():
    from studio.data.prepare import load_stage_examples

    [pairs] = load_stage_examples(DataConfig(datasets=["dpo_zh_demo"]), "dpo")
    assert len(pairs.examples) >= 120 and len({p.prompt[-1]["content"] for p in pairs.examples}) >= 120
    for pair in pairs.examples:
        assert pair.chosen["content"].startswith("喵～") and pair.chosen["content"].endswith("🐾")
        assert "喵～" not in pair.rejected["content"] and "🐾" not in pair.rejected["content"]
        assert re.search(r"[\u4e00-\u9fff]", pair.prompt[-1]["content"] + pair.rejected["content"])
    [plain] = load_conversations(DataConfig(datasets=["plain_zh_demo"]))  # the SFT step before DPO: the rejected side
    assert [c[-1]["content"] for c in plain.examples] == [p.rejected["content"] for p in pairs.examples]
    [feedback] = load_stage_examples(DataConfig(datasets=["kto_zh_demo"]), "kto")
    assert [f.desirable for f in feedback.examples[:4]] == [True, False, True, False] and len(feedback.examples) >= 60
