"""The memory estimate shown under Preview command: counted from config.json, checked against real models."""

import json

import pytest

from studio.config import RunConfig
from studio.memory_estimate import GIB, estimate_memory, model_shape

# Qwen1.5-1.8B's architecture (config.json's fields that size it): the tutorial's model, which no test can download
QWEN_1_8B = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_size": 2048,
    "intermediate_size": 5504,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
    "vocab_size": 151936,
    "tie_word_embeddings": False,
}


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qwen1.5-1.8b-arch")
    (folder / "config.json").write_text(json.dumps(QWEN_1_8B))
    return folder


def test_counts_are_those_of_the_loaded_model_and_its_adapter(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from studio.config import LoraConfig
    from studio.modeling.loader import attach_lora

    shape = model_shape(tiny_model_dir, rank=8, targets=["all"])
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert shape.layer_params + shape.whole_params == sum(p.numel() for p in model.parameters())
    adapted = attach_lora(model, LoraConfig(rank=8, target_modules=["all"]))
    assert shape.adapter_params == sum(p.numel() for p in adapted.parameters() if p.requires_grad)
    only_q = model_shape(tiny_model_dir, rank=8, targets=["q_proj"])
    assert 0 < only_q.adapter_params < shape.adapter_params


def test_the_tutorial_run_matches_its_measured_gpu_peak(qwen_dir):
    """docs/benchmarks.md, call 3: QLoRA on this architecture with 4096 tokens per forward pass, compiled layers
    on dequantised copies, on an 80 GB H100: CUDA max allocated 4884 and 5501 MiB in two rounds."""
    estimate = estimate_memory(RunConfig(), qwen_dir, device="cuda", processes=1, gpu_gib=79.1)
    assert estimate.dequantized_gib > 2  # 'auto' caches on a GPU this size
    assert 4884 / 1024 * 0.9 < estimate.total_gib - estimate.overhead_gib < 5501 / 1024 * 1.1


def test_fsdp_divides_the_layers_and_the_adapter_but_not_the_embeddings(qwen_dir):
    bf16 = RunConfig().with_overrides({"quantization.method": "none", "distributed.strategy": "fsdp"})
    one = estimate_memory(bf16, qwen_dir, device="cuda", processes=1)
    four = estimate_memory(bf16, qwen_dir, device="cuda", processes=4)
    shape = model_shape(qwen_dir, rank=8, targets=["all"])
    layer = shape.layer_params / shape.layers * 2 / GIB
    assert four.weights_gib == pytest.approx(
        shape.whole_params * 2 / GIB + (one.weights_gib - shape.whole_params * 2 / GIB) / 4 + 2 * layer
    )
    assert four.adapter_gib == pytest.approx(one.adapter_gib / 4)
    assert four.sharded and "sharded over 4" in four.describe() and "切分到 4 个设备" in four.describe().text("zh")
    ddp = estimate_memory(bf16.with_overrides({"distributed.strategy": "ddp"}), qwen_dir, device="cuda", processes=4)
    assert ddp.weights_gib == pytest.approx(one.weights_gib)


def test_ppo_adds_the_reward_model_and_sampling_adds_its_kv_cache(qwen_dir):
    sft = estimate_memory(RunConfig(), qwen_dir, device="cuda", processes=1, gpu_gib=79.1)
    assert sft.reward_model_gib == sft.sampling_gib == 0
    ppo = estimate_memory(
        RunConfig().with_overrides({"training.stage": "ppo"}), qwen_dir, device="cuda", processes=1, gpu_gib=79.1
    )
    assert ppo.reward_model_gib > ppo.weights_gib  # the base again, with its adapter
    grpo = RunConfig().with_overrides(
        {
            "training.stage": "grpo",
            "grpo.num_generations": "8",
            "data.cutoff_len": "512",
            "generation.max_new_tokens": "512",
        }
    )
    estimate = estimate_memory(grpo, qwen_dir, device="cuda", processes=1, gpu_gib=79.1)
    rows = 2 * 2 * 8  # batch x accumulation x answers per prompt
    kv_per_token = 2 * 24 * 2048 * 2  # keys and values, 24 layers, 16 heads of 128, bf16
    assert estimate.sampling_gib == pytest.approx(rows * 1024 * kv_per_token / GIB)
    assert "answers sampled at once" in estimate.describe() and "同时采样的回答" in estimate.describe().text("zh")
    assert "reward model" in ppo.describe()


def test_a_model_not_on_this_machine_says_so_and_a_local_one_is_estimated(tmp_path, locks, tiny_model_dir):
    from studio.api import Studio

    studio = Studio(tmp_path / "runs", locks=locks)
    absent = RunConfig().with_overrides({"model.name_or_path": "qlora-studio-tests/no-such-model"})
    assert "not on this machine yet" in studio.memory_estimate(absent)
    local = RunConfig().with_overrides({"model.name_or_path": str(tiny_model_dir), "training.devices": "cpu"})
    said = studio.memory_estimate(local)
    assert said.startswith("Memory per process (estimate): base weights") and "每个进程的内存" in said.text("zh")


def test_each_optimizer_counts_its_own_state(qwen_dir):
    """Weight and gradient stay fp32 (half of AdamW's 16 bytes a trained weight); the moments shrink."""

    def adapter(**options: str) -> float:
        config = RunConfig().with_overrides({"quantization.method": "none", **options})
        return estimate_memory(config, qwen_dir, device="cuda", processes=1).adapter_gib

    adamw = adapter()
    assert adapter(**{"optimizer.name": "adamw_8bit"}) == pytest.approx(adamw * (1 + (1 + 4 / 256) / 4) / 2)
    assert adapter(**{"optimizer.name": "adafactor"}) == pytest.approx(adamw * (1 + (1 / 8 + 1 / 2048) / 2) / 2)
    # GaLore and BAdam train the model's own weights (finetuning.method full or freeze)
    full = {"finetuning.method": "full"}
    whole = adapter(**full)
    galore_2 = adapter(**full, **{"optimizer.name": "galore", "optimizer.galore_rank": "2"})
    galore_16 = adapter(**full, **{"optimizer.name": "galore"})
    assert whole / 2 < galore_2 < galore_16 < whole  # moments of rank-r projections: fewer for a lower rank
    assert adapter(**full, **{"optimizer.name": "badam"}) == pytest.approx(whole * (1 + 1.5 / 24) / 2)  # 1 of 24


def test_a_vision_model_s_counts_are_those_of_the_loaded_model_of_each_family(each_vl_model_dir):
    """Built on the meta device from config.json as its own class (vision tower and projector outside the decoder
    layers); an adapter (with the vision switches on and off) and a full run's trained weights counted as the studio
    attaches them."""
    import torch
    from transformers import AutoModelForImageTextToText

    from studio.config import FinetuningConfig, LoraConfig
    from studio.modeling.methods import attach_method

    def loaded():
        return AutoModelForImageTextToText.from_pretrained(each_vl_model_dir, dtype=torch.float32).requires_grad_(False)

    full = FinetuningConfig(method="full")
    shape = model_shape(each_vl_model_dir, rank=8, targets=["all"], finetuning=full)
    model = loaded()
    assert shape.layer_params + shape.whole_params == sum(p.numel() for p in model.parameters())
    assert (shape.layers, shape.hidden, shape.kv_width) == (2, 64, 2 * 16)
    trained = attach_method(model, full, LoraConfig())  # the vision tower and projector frozen by default
    assert shape.trained_params == sum(p.numel() for p in trained.parameters() if p.requires_grad)
    for finetuning in (
        FinetuningConfig(),
        FinetuningConfig(freeze_vision_tower=False, freeze_multi_modal_projector=False),
    ):
        # the tower unfrozen: its blocks adapted too; the projector unfrozen: trained whole beside the adapter
        adapted = attach_method(loaded(), finetuning, LoraConfig(rank=8))
        counted = model_shape(each_vl_model_dir, rank=8, targets=["all"], finetuning=finetuning).adapter_params
        assert counted == sum(p.numel() for p in adapted.parameters() if p.requires_grad)
    estimate = estimate_memory(RunConfig(), each_vl_model_dir, device="cuda", processes=1)
    assert estimate.total_gib > estimate.weights_gib > 0


def test_fsdp_divides_a_vision_model_s_language_adapter_but_not_its_vision_tower_s(tiny_vl_model_dir):
    """The vision blocks' LoRA and a projector trained whole stay whole on every FSDP rank (sharding.py)."""
    from transformers import AutoModelForImageTextToText

    from studio.modeling.methods import attach_method

    unfrozen = {"finetuning.freeze_vision_tower": "false", "finetuning.freeze_multi_modal_projector": "false"}
    config = RunConfig().with_overrides({"quantization.method": "none", "distributed.strategy": "fsdp", **unfrozen})
    shape = model_shape(tiny_vl_model_dir, config.lora.rank, config.lora.target_modules, config.finetuning)
    adapted = attach_method(
        AutoModelForImageTextToText.from_pretrained(tiny_vl_model_dir), config.finetuning, config.lora
    )
    vision = [p for name, p in adapted.named_parameters() if p.requires_grad and ".visual." in name]
    assert shape.whole_adapter_params == sum(p.numel() for p in vision) > 0
    one, four = (estimate_memory(config, tiny_vl_model_dir, device="cuda", processes=n) for n in (1, 4))
    whole = shape.whole_adapter_params / shape.adapter_params
    assert four.adapter_gib == pytest.approx(one.adapter_gib * (whole + (1 - whole) / 4))
