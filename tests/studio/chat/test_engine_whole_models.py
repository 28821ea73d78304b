"""Full and freeze runs in the chat engine: their tensors swapped into the one base, beside LoRA adapters; and OFT."""

import gc
import weakref

import pytest
import torch

from studio.chat import AdapterError, ChatEngine
from studio.config import GenerationConfig, ModelConfig, QuantizationConfig

GREEDY = GenerationConfig(temperature=0, max_new_tokens=8, repetition_penalty=1.0)
QUESTION = [{"role": "user", "content": "你是谁？"}]


def _ids(tokenizer) -> torch.Tensor:
    return tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, return_dict=True, return_tensors="pt")[
        "input_ids"
    ]


def _logits(engine: ChatEngine, adapter: str | None) -> torch.Tensor:
    with engine.selected(adapter) as (model, tokenizer), torch.inference_mode():
        return model(input_ids=_ids(tokenizer)).logits


def test_a_full_run_answers_with_its_own_weights_and_the_base_comes_back_bit_for_bit(engine, method_runs):
    from transformers import AutoModelForCausalLM

    base_logits, base = _logits(engine, None), engine.answer(QUESTION, None, GREEDY).text
    info = engine.load_adapter(str(method_runs("full").model_dir))
    assert info.name == "full" and info.whole_model and engine.base_loads == 1
    base_side, tuned = list(engine.stream([QUESTION, QUESTION], [None, "full"], GREEDY, every_s=0))[-1]
    assert base_side.text == base and tuned.text != base and tuned.tokens > 0
    trained = AutoModelForCausalLM.from_pretrained(info.path, dtype=engine.plan.weight_dtype).eval()
    with torch.inference_mode():
        own = trained(input_ids=_ids(engine.tokenizer)).logits
    assert torch.equal(_logits(engine, "full"), own)  # the run's model itself, not an approximation of it
    assert torch.equal(_logits(engine, None), base_logits)  # selected and let go: the base's tensors again
    assert engine.answers([QUESTION, QUESTION], ["full", None], GREEDY) == [tuned.text, base]


def test_a_freeze_run_keeps_only_what_it_trained_and_unloading_frees_it(engine, method_runs):
    base_logits = _logits(engine, None)
    engine.load_adapter(str(method_runs("freeze").model_dir))
    kept = engine.whole["freeze"]
    last_layer = {n for n, _ in engine.model.named_parameters() if ".layers.1." in n}
    assert {id(p) for p, _ in kept.swaps} == {id(p) for n, p in engine.model.named_parameters() if n in last_layer}
    assert engine.answer(QUESTION, "freeze", GREEDY).text != engine.answer(QUESTION, None, GREEDY).text
    tensor = weakref.ref(kept.swaps[0][1])
    del kept
    engine.unload_adapter("freeze")
    gc.collect()
    assert tensor() is None and "freeze" not in engine.adapters
    assert torch.equal(_logits(engine, None), base_logits)


def test_a_lora_adapter_and_a_full_run_side_by_side_each_off_while_the_other_answers(
    engine, method_runs, strong_adapter
):
    base = engine.answer(QUESTION, None, GREEDY).text
    lora = engine.load_adapter(str(strong_adapter)).name
    alone = engine.answer(QUESTION, lora, GREEDY).text
    engine.load_adapter(str(method_runs("full").model_dir))
    full = engine.answer(QUESTION, "full", GREEDY).text
    rows = list(engine.stream([QUESTION] * 3, [None, lora, "full"], GREEDY, every_s=0))[-1]
    assert [answer.text for answer in rows] == [base, alone, full] and len({base, alone, full}) == 3
    assert all(answer.done for answer in rows)
    engine.unload_adapter(lora)  # the base again a plain model; the run stays
    assert type(engine.model).__name__ == "Qwen2ForCausalLM"
    assert engine.answers([QUESTION, QUESTION], ["full", None], GREEDY) == [full, base]


def test_a_quantised_base_refuses_a_whole_model_saying_how_to_load_it(tiny_model_dir, method_runs):
    engine = ChatEngine()
    engine.load(ModelConfig(name_or_path=str(tiny_model_dir)), QuantizationConfig(method="4bit"))
    try:
        with pytest.raises(AdapterError, match="quantization none"):
            engine.load_adapter(str(method_runs("full").model_dir))
        assert engine.adapters == {} and engine.whole == {}
    finally:
        engine.unload()


def test_a_model_of_other_shapes_is_refused(engine, tmp_path):
    from studio.dev.tiny_models import build_tiny_model

    other = build_tiny_model(tmp_path / "other", hidden=32)
    with pytest.raises(AdapterError, match="does not fit the loaded base model.*shape"):
        engine.load_adapter(str(other))
    assert engine.adapters == {} and engine.whole == {}


def test_an_oft_run_answers_beside_a_base_left_alone(engine, method_runs, strong_adapter):
    base = engine.answer(QUESTION, None, GREEDY).text
    name = engine.load_adapter(str(method_runs("oft").adapter_dir)).name
    assert engine.adapters[name].method == "oft"
    base_side, tuned = list(engine.stream([QUESTION, QUESTION], [None, name], GREEDY, every_s=0))[-1]
    assert base_side.text == base and tuned.text != base  # peft mixes LoRA rows only: OFT's run apart
    assert engine.answer(QUESTION, name, GREEDY).text == tuned.text
    with pytest.raises(AdapterError, match="adapters of one kind"):
        engine.load_adapter(str(strong_adapter))


def test_auto_quantisation_loads_the_base_a_whole_model_can_replace():
    from studio.chat.whole_models import base_quantization

    assert base_quantization(QuantizationConfig(method="auto"), whole_model=True).method == "none"
    assert base_quantization(QuantizationConfig(method="auto"), whole_model=False).method == "auto"
    assert base_quantization(QuantizationConfig(method="4bit"), whole_model=True).method == "4bit"  # refused later
