"""Weighted combinations of LoRA adapters in the chat engine, on the tiny model: peft's formula, logits, side by
side beside the base, served by the OpenAI-compatible endpoint, unloaded; refusals."""

import math

import pytest
import torch

from studio.adapters import AdapterError
from studio.config import GenerationConfig
from studio.openai_api import OpenAIEndpoint

GREEDY = GenerationConfig(temperature=0, max_new_tokens=8, repetition_penalty=1.0)
QUESTION = [{"role": "user", "content": "你是谁？"}]
SCALING = 8 / 4  # make_adapter's lora_alpha / r


def _logits(engine, adapter):
    ids = engine.tokenizer("你好，世界", return_tensors="pt")["input_ids"]
    with engine.selected(adapter) as (model, _), torch.inference_mode():
        return model(input_ids=ids).logits.float()


def _delta(engine, adapter: str) -> torch.Tensor:
    layer = engine.model.get_base_model().model.layers[0].self_attn.q_proj
    return layer.get_delta_weight(adapter).float()


def _ab(engine, adapter: str) -> tuple[torch.Tensor, torch.Tensor]:
    layer = engine.model.get_base_model().model.layers[0].self_attn.q_proj
    return layer.lora_A[adapter].weight.float(), layer.lora_B[adapter].weight.float()


def test_combinations_follow_peft_formula_and_answer_like_adapters(engine, strong_adapter, second_adapter):
    a = engine.load_adapter(str(strong_adapter)).name
    b = engine.load_adapter(str(second_adapter)).name
    engine.combine("first_only", {a: 1.0, b: 0.0})
    assert torch.allclose(_logits(engine, "first_only"), _logits(engine, a), atol=1e-5)

    engine.combine("halves", {a: 0.5, b: 0.5}, "linear")
    engine.combine("halves_cat", {a: 0.5, b: 0.5}, "cat")
    (a_A, a_B), (b_A, b_B) = _ab(engine, a), _ab(engine, b)
    root = math.sqrt(0.5 * SCALING)  # linear mixes A and B each with sqrt(weight * scaling): cross terms stay
    linear = (root * a_B + root * b_B) @ (root * a_A + root * b_A)
    assert torch.allclose(_delta(engine, "halves"), linear, atol=3e-3)
    cat = 0.5 * SCALING * (a_B @ a_A + b_B @ b_A)  # cat stacks them: exactly the weighted sum of the deltas
    assert torch.allclose(_delta(engine, "halves_cat"), cat, atol=3e-3)  # bf16 weights on CPU: its rounding
    half = _logits(engine, "halves")
    assert not torch.allclose(half, _logits(engine, a), atol=1e-3)
    assert not torch.allclose(half, _logits(engine, b), atol=1e-3)
    assert engine.combinations["halves"].describe() == f"0.5 × {a} + 0.5 × {b} (linear)"
    assert engine.adapters["halves_cat"].rank == 8

    *_, (base, mixed) = engine.stream([QUESTION, QUESTION], [None, "halves"], GREEDY, every_s=0)
    assert mixed.text == engine.answer(QUESTION, "halves", GREEDY).text != base.text
    assert base.text == engine.answer(QUESTION, None, GREEDY).text
    assert OpenAIEndpoint(lambda: engine).models()["halves"] == "halves"  # served as a model name too
    engine.unload_adapter(a)  # the combination keeps its own weights
    assert torch.allclose(_logits(engine, "halves"), half, atol=1e-5)
    engine.unload_adapter("halves")
    assert "halves" not in engine.combinations and "halves" not in engine.adapters


def test_unknown_adapters_and_taken_names_are_refused(engine, strong_adapter, second_adapter):
    a = engine.load_adapter(str(strong_adapter)).name
    with pytest.raises(AdapterError, match="Load it first"):
        engine.combine("mix", {a: 1.0, "nowhere": 1.0})
    b = engine.load_adapter(str(second_adapter)).name
    with pytest.raises(AdapterError, match="new name"):
        engine.combine(a, {a: 1.0, b: 1.0})
    assert set(engine.adapters) == {a, b} and engine.combinations == {}


def test_a_combination_on_a_4bit_base_mixes_only_the_adapters(tiny_model_dir, strong_adapter, second_adapter):
    from studio.chat import ChatEngine
    from studio.config import ModelConfig, QuantizationConfig

    engine = ChatEngine()
    engine.load(ModelConfig(name_or_path=str(tiny_model_dir)), QuantizationConfig(method="4bit"))
    try:
        a, b = engine.load_adapter(str(strong_adapter)).name, engine.load_adapter(str(second_adapter)).name
        engine.combine("first_only", {a: 1.0, b: 0.0}, "cat")
        alone, mixed = _logits(engine, a), _logits(engine, "first_only")
        # bf16 compute on the 4-bit base: rank 8 (4 zero rows) rounds its sums apart from rank 4's, a little
        assert (mixed - alone).abs().max() < 0.05 * (alone - _logits(engine, None)).abs().max()
    finally:
        engine.unload()
