"""A reward model (an rm run's adapter with its value head) in the chat engine: scores of texts, read as the
trainer reads them, and held-out pairs scored by the reward model itself in Evaluate."""

import shutil

import pytest
import torch
from safetensors.torch import save_file

from studio.chat import AdapterError
from studio.config import RunConfig
from studio.data.examples import PairwiseExample
from studio.data.tokenize_kinds import encode_one_turn
from studio.evaluation.kinds import score


@pytest.fixture
def reward_adapter(tmp_path, strong_adapter, tiny_model_dir):
    """The strong adapter saved as an rm run saves it: its value head and the run's config beside it."""
    folder = tmp_path / "rm-run" / "adapter"
    shutil.copytree(strong_adapter, folder)
    torch.manual_seed(3)
    save_file(
        {"v_head.summary.weight": torch.randn(1, 64), "v_head.summary.bias": torch.zeros(1)},
        folder / "value_head.safetensors",
    )
    RunConfig().with_overrides({"training.stage": "rm", "model.name_or_path": str(tiny_model_dir)}).save(
        folder / "studio_config.yaml"
    )
    return folder


def test_a_reward_model_scores_a_text_at_its_last_token(engine, reward_adapter):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    name = engine.load_adapter(str(reward_adapter)).name
    assert engine.adapters[name].reward_model and name in engine.heads
    messages = [{"role": "user", "content": "你是谁？"}]
    scored = engine.score_text(messages, "我是小墨。", name)

    prompt, answer = encode_one_turn(engine.tokenizer, messages, {"role": "assistant", "content": "我是小墨。"})
    dtype = engine.plan.weight_dtype  # bf16 where this CPU computes it natively ('auto' precision)
    base = AutoModelForCausalLM.from_pretrained(engine.model_name, dtype=dtype)
    model = PeftModel.from_pretrained(base, str(reward_adapter))
    with torch.no_grad():
        hidden = model(input_ids=torch.tensor([prompt + answer]), output_hidden_states=True).hidden_states[-1]
    head = engine.heads[name]
    expected = head(hidden[0, -1].to(next(head.parameters()).dtype)).item()
    assert scored == pytest.approx(expected, abs=1e-4 if dtype == torch.float32 else 2e-2)
    assert engine.score_text(messages, "你好", name) != pytest.approx(scored)


def test_an_adapter_without_a_value_head_cannot_score(engine, strong_adapter):
    name = engine.load_adapter(str(strong_adapter)).name
    with pytest.raises(AdapterError, match="not a reward model"):
        engine.score_text([{"role": "user", "content": "hi"}], "hello", name)


def test_held_out_pairs_are_scored_by_the_reward_model_itself(engine, reward_adapter):
    name = engine.load_adapter(str(reward_adapter)).name
    pairs = [
        PairwiseExample(
            [{"role": "user", "content": f"问题 {i}"}],
            {"role": "assistant", "content": "喵～" * (i + 1)},
            {"role": "assistant", "content": "这是一个好问题。"},
        )
        for i in range(4)
    ]
    metrics = score(engine, pairs, "pairwise", [None, name], RunConfig(), lambda *args: None)
    documents_scores = [
        engine.score_text(p.prompt, answer["content"], name) for p in pairs for answer in (p.chosen, p.rejected)
    ]
    chosen, rejected = documents_scores[0::2], documents_scores[1::2]
    expected = sum(c > r for c, r in zip(chosen, rejected)) / len(pairs)
    assert metrics[name]["reward_accuracy"] == pytest.approx(expected)
    assert metrics[name]["reward_margin"] == pytest.approx(sum(chosen) / 4 - sum(rejected) / 4, abs=1e-3)
    assert metrics["base"]["reward_accuracy"] == 0.0  # the base has no reward model: its implicit rewards are 0


def test_a_vision_reward_model_scores_held_out_picture_pairs_with_their_pixels(tmp_path, tiny_vl_model_dir):
    """An rm adapter of a vision-language model scores Evaluate's picture pairs as the rm stage's forward pass
    (TokenLosses.final_hidden, pixels through the vision tower) reads them; another picture changes the score."""
    import dataclasses

    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForImageTextToText

    from studio.chat.engine import ChatEngine
    from studio.config import DataConfig, ModelConfig, QuantizationConfig
    from studio.data.prepare import load_stage_examples
    from studio.evaluation.kinds import _documents
    from studio.training.token_losses import TokenLosses
    from tests.support import make_vision_adapter

    folder = make_vision_adapter(tiny_vl_model_dir, tmp_path / "rm-run" / "adapter")
    torch.manual_seed(3)
    hidden_size = AutoConfig.from_pretrained(tiny_vl_model_dir).text_config.hidden_size
    head = {"v_head.summary.weight": torch.randn(1, hidden_size), "v_head.summary.bias": torch.zeros(1)}
    save_file(head, folder / "value_head.safetensors")
    model_config = ModelConfig(name_or_path=str(tiny_vl_model_dir))
    RunConfig().with_overrides({"training.stage": "rm", "model.name_or_path": str(tiny_vl_model_dir)}).save(
        folder / "studio_config.yaml"
    )
    engine = ChatEngine()
    engine.load(model_config, QuantizationConfig(method="none"))
    try:
        name = engine.load_adapter(str(folder)).name
        [loaded] = load_stage_examples(DataConfig(datasets=["shapes_zh_dpo_demo"]), "dpo")
        pairs = loaded.examples[:2]
        encoder = engine.pictures.training.encoder(engine.tokenizer)
        documents, _ = _documents(engine.tokenizer, pairs, "pairwise", 1024, encoder)
        assert all(document.images for document in documents)
        scored = engine.reward_scores(documents, name, batch_size=4)
        metrics = score(engine, pairs, "pairwise", [name], RunConfig(), lambda *args: None)[name]

        dtype = engine.plan.weight_dtype
        trained = PeftModel.from_pretrained(
            AutoModelForImageTextToText.from_pretrained(tiny_vl_model_dir, dtype=dtype), str(folder)
        )
        losses = TokenLosses(
            trained.eval(),
            device="cpu",
            packing=True,
            token_budget=10**6,
            batch_size=4,
            pictures=engine.pictures.training,
        )
        with torch.no_grad():
            expected = engine.heads[name](losses.final_hidden(documents)).tolist()
        assert scored == pytest.approx(expected, abs=1e-4 if dtype == torch.float32 else 3e-2)
        chosen, rejected = scored[0::2], scored[1::2]
        assert metrics["reward_margin"] == pytest.approx(sum(chosen) / 2 - sum(rejected) / 2, abs=1e-3)
        other = dataclasses.replace(documents[0], images=documents[2].images)  # another 112x112 picture
        assert documents[2].images != documents[0].images
        assert engine.reward_scores([other], name, 1)[0] != pytest.approx(scored[0], abs=1e-3)
    finally:
        engine.unload()
