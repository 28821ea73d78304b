"""chat.engine vllm without vLLM: the refusals, said by name with what to do, and the studio's settings in vLLM's
terms (SamplingParams' and LLM's arguments, LoRARequest ids). vLLM itself cannot run here (no CUDA GPU); what it is
handed is checked, and bench/gpu_session.sh vllm checks its answers on a GPU."""

from __future__ import annotations

import pytest
import torch

from studio.adapters import read_adapter
from studio.chat.vllm_options import (
    LoraSlots,
    VllmRefused,
    check_servable,
    check_vllm,
    generate_sampling,
    generation_sampling,
    llm_options,
    lora_rank_reserved,
)
from studio.config import ChatConfig, GenerationConfig, ModelConfig, QuantizationConfig, TrainingConfig
from studio.locales import LANGUAGES
from studio.modeling.compute import resolve_plan
from studio.openai_api.requests import Sampling


def _refused(call, *args, **kwargs) -> VllmRefused:
    with pytest.raises(VllmRefused) as caught:
        call(*args, **kwargs)
    return caught.value


def test_vllm_is_refused_without_cuda_first_then_without_the_package():
    for installed in (True, False):  # installing vllm would not help a machine without a GPU: that is said first
        no_gpu = _refused(check_vllm, cuda=False, installed=installed)
        assert no_gpu.message.key == "engines.vllm_needs_cuda"
        assert "vLLM needs a CUDA GPU" in str(no_gpu) and "chat.engine: hf runs here" in str(no_gpu)
    missing = _refused(check_vllm, cuda=True, installed=False)
    assert missing.message.key == "engines.vllm_not_installed"
    assert "pip install vllm" in str(missing) and "CUDA build of torch" in str(missing)
    check_vllm(cuda=True, installed=True)  # where both are there, nothing is refused
    for lang in LANGUAGES:  # said in every language, with the command to run kept as it is
        assert "pip install vllm" in missing.text(lang) and "chat.engine" in no_gpu.text(lang)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_this_machine_without_a_gpu_is_refused_by_name():
    assert _refused(check_vllm).message.key == "engines.vllm_needs_cuda"


def test_chat_settings_become_sampling_params_as_the_hf_engine_samples():
    stops = {7, 2, 5}
    greedy = generation_sampling(GenerationConfig(temperature=0, repetition_penalty=1.2, seed=3), stops)
    assert greedy == {
        "max_tokens": 256,
        "repetition_penalty": 1.2,  # the HF engine's greedy answers are penalised too
        "seed": 3,
        "stop_token_ids": [2, 5, 7],
        "stop": [],
        "temperature": 0.0,
        "top_p": 1.0,
        "top_k": -1,
    }
    sampled = generation_sampling(GenerationConfig(temperature=0.7, top_p=0.9, top_k=0, max_new_tokens=64), stops)
    assert {k: sampled[k] for k in ("temperature", "top_p", "top_k", "max_tokens", "seed")} == {
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": -1,  # top_k 0 is off in Chat; vLLM's "all tokens" is -1
        "max_tokens": 64,
        "seed": 42,
    }
    assert generation_sampling(GenerationConfig(top_k=50), set())["top_k"] == 50


def test_the_endpoints_generate_arguments_become_the_same_sampling_params():
    """What studio.openai_api.generation hands a model's generate(): a request's Sampling, as transformers takes it."""
    asked = Sampling(max_tokens=9, temperature=0.5, top_p=0.8, top_k=4, repetition_penalty=1.1, stop=("END",))
    kwargs = {**asked.generate_kwargs(), "repetition_penalty": asked.repetition_penalty, "stop_strings": ["END"]}
    params = generate_sampling(kwargs, max_new_tokens=9, seed=11, stop_ids={3})
    assert params == {
        "max_tokens": 9,
        "repetition_penalty": 1.1,
        "seed": 11,
        "stop_token_ids": [3],
        "stop": ["END"],
        "temperature": 0.5,
        "top_p": 0.8,
        "top_k": 4,
    }
    greedy = Sampling(max_tokens=None, temperature=0)
    params = generate_sampling(greedy.generate_kwargs(), max_new_tokens=100, seed=1, stop_ids=set())
    assert (params["temperature"], params["top_p"], params["top_k"], params["stop"]) == (0.0, 1.0, -1, [])
    plain = generate_sampling(Sampling(max_tokens=5).generate_kwargs(), 5, 1, set())  # OpenAI's defaults
    assert (plain["temperature"], plain["top_p"], plain["top_k"], plain["repetition_penalty"]) == (1.0, 1.0, -1, 1.0)


def test_each_loaded_adapter_gets_a_lora_id_never_given_twice():
    slots = LoraSlots()
    assert slots.add("sft", "/runs/a/adapter") == 1  # vLLM refuses id 0
    assert slots.add("dpo", "/runs/b/adapter") == 2
    assert slots.add("sft", "/runs/a/adapter") == 1  # loaded already: the same id
    assert slots.request("dpo") == ("dpo", 2, "/runs/b/adapter") and slots.request(None) is None
    assert slots.remove("sft") == 1
    # loaded again (its folder perhaps trained further): a new id, so vLLM reads it anew rather than its cached weights
    assert slots.add("sft", "/runs/a/adapter") == 3
    slots.clear()
    assert slots.add("dpo", "/runs/b/adapter") == 4
    with pytest.raises(KeyError):
        slots.request("sft")


def _peft_adapter(model_dir, target, **config):
    from peft import LoraConfig, OFTConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    kind = OFTConfig if config.pop("oft", False) else LoraConfig
    peft_config = kind(target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM", **config)
    get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), peft_config).save_pretrained(target)
    return read_adapter(target)


def test_what_vllm_cannot_serve_is_refused_by_name_with_what_to_do(tmp_path, tiny_model_dir, strong_adapter):
    check_servable(read_adapter(strong_adapter), max_lora_rank=8)  # a plain LoRA adapter (rank 4) is served
    whole = _refused(check_servable, read_adapter(tiny_model_dir), 64)  # a full run's model folder
    assert whole.message.key == "engines.vllm_whole_model" and str(tiny_model_dir) in str(whole)
    assert "as the base model (model.name_or_path)" in str(whole)
    oft = _refused(check_servable, _peft_adapter(tiny_model_dir, tmp_path / "oft", oft=True, r=0, oft_block_size=4), 64)
    assert oft.message.key == "engines.vllm_not_lora" and "chat.engine: hf" in str(oft)
    dora = _refused(check_servable, _peft_adapter(tiny_model_dir, tmp_path / "dora", r=4, use_dora=True), 64)
    assert dora.message.key == "engines.vllm_dora"
    saved = _peft_adapter(tiny_model_dir, tmp_path / "saved", r=4, modules_to_save=["lm_head"])
    assert "lm_head" in str(_refused(check_servable, saved, 64))
    wide = _peft_adapter(tiny_model_dir, tmp_path / "wide", r=4, rank_pattern={"v_proj": 24})
    too_wide = _refused(check_servable, wide, 16)
    assert too_wide.message.key == "engines.vllm_rank_too_high"
    assert "rank 24" in str(too_wide) and "chat.max_lora_rank to 24 or more" in str(too_wide)
    check_servable(wide, 24)


def test_vllm_reserves_the_smallest_rank_it_offers_that_holds_the_setting():
    assert [lora_rank_reserved(r) for r in (1, 8, 9, 64, 300, 321, 512)] == [8, 8, 16, 64, 320, 512, 512]


def test_llm_arguments_follow_the_plan_the_hf_engine_loads_with():
    model, settings = ModelConfig(name_or_path="Qwen/Qwen1.5-1.8B-Chat"), ChatConfig(engine="vllm")
    qlora = resolve_plan(QuantizationConfig(method="4bit"), TrainingConfig(precision="bf16"), cuda=True)
    assert llm_options("/models/qwen", model, qlora, settings) == {
        "model": "/models/qwen",
        "dtype": "bfloat16",
        "trust_remote_code": False,
        "enable_lora": True,
        "max_loras": 4,
        "max_lora_rank": 64,
        "gpu_memory_utilization": 0.7,
        "quantization": "bitsandbytes",  # the base quantised in flight, as QLoRA trained on it
    }
    plain = resolve_plan(QuantizationConfig(method="none"), TrainingConfig(precision="fp16"), cuda=True)
    sized = settings.model_copy(update={"max_model_len": 2048, "max_loras": 2, "max_lora_rank": 24})
    options = llm_options("/models/qwen", model, plain, sized)
    assert "quantization" not in options and options["dtype"] == "float16"
    assert (options["max_model_len"], options["max_loras"], options["max_lora_rank"]) == (2048, 2, 32)


def test_a_base_vllm_would_load_differently_is_refused():
    settings = ChatConfig(engine="vllm")
    eight = resolve_plan(QuantizationConfig(method="8bit"), TrainingConfig(precision="bf16"), cuda=True)
    no_eight = _refused(llm_options, "/m", ModelConfig(), eight, settings)
    assert no_eight.message.key == "engines.vllm_no_8bit" and "quantization.method to 4bit or none" in str(no_eight)
    plan = resolve_plan(QuantizationConfig(method="none"), TrainingConfig(precision="bf16"), cuda=True)
    stretched = _refused(llm_options, "/m", ModelConfig(rope_scaling="linear"), plan, settings)
    assert stretched.message.key == "engines.vllm_no_rope_scaling" and "linear" in str(stretched)
