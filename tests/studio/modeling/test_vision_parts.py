"""What trains in a vision-language model under each method and freeze switch, named parameter by parameter, on the
tiny Qwen2-VL (vision blocks 0-1, projector `merger`, language layers 0-1), as LLaMA-Factory decides it; and a 4-bit
base that keeps its vision tower and projector unquantised."""

from __future__ import annotations

import pytest
import torch

from studio.config import FinetuningConfig, LoraConfig
from studio.modeling.methods import attach_method
from studio.modeling.sources import ModelLoadError

LANGUAGE_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
VISION_LINEARS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
MERGER = {f"model.visual.merger.{name}" for name in ("ln_q.weight", "ln_q.bias", "mlp.0.weight", "mlp.0.bias")} | {
    "model.visual.merger.mlp.2.weight",
    "model.visual.merger.mlp.2.bias",
}


def _base(model_dir):
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32).requires_grad_(False)


def _trainable(model) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def _adapted(model) -> set[str]:
    """The modules that carry a LoRA adapter, by their name in transformers' model."""
    return {
        name.removeprefix("base_model.model.").removesuffix(".lora_A.default.weight")
        for name in _trainable(model)
        if name.endswith("lora_A.default.weight")
    }


def _language(modules=LANGUAGE_LINEARS) -> set[str]:
    parts = {m: "self_attn" if m.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) else "mlp" for m in modules}
    return {f"model.language_model.layers.{i}.{parts[m]}.{m}" for i in (0, 1) for m in modules}


def _vision() -> set[str]:
    return {f"model.visual.blocks.{i}.{m}" for i in (0, 1) for m in VISION_LINEARS}


def test_lora_all_adapts_the_language_model_s_linear_layers_only(tiny_vl_model_dir):
    model = attach_method(_base(tiny_vl_model_dir), FinetuningConfig(), LoraConfig())
    assert _adapted(model) == _language()
    assert all("lora_" in name for name in _trainable(model))  # nothing else trains: no projector, no vision tower


def test_lora_with_the_vision_tower_unfrozen_adapts_its_blocks_too_but_never_the_patch_embedding(tiny_vl_model_dir):
    model = attach_method(_base(tiny_vl_model_dir), FinetuningConfig(freeze_vision_tower=False), LoraConfig())
    assert _adapted(model) == _language() | _vision()


def test_named_lora_targets_stay_out_of_frozen_parts(tiny_vl_model_dir):
    lora = LoraConfig(target_modules=["q_proj", "qkv"])
    model = attach_method(_base(tiny_vl_model_dir), FinetuningConfig(), lora)
    assert _adapted(model) == _language(("q_proj",))
    unfrozen = attach_method(_base(tiny_vl_model_dir), FinetuningConfig(freeze_vision_tower=False), lora)
    assert _adapted(unfrozen) == _language(("q_proj",)) | {f"model.visual.blocks.{i}.attn.qkv" for i in (0, 1)}


def test_lora_with_the_projector_unfrozen_trains_it_whole_and_saves_it_with_the_adapter(tiny_vl_model_dir, tmp_path):
    model = attach_method(_base(tiny_vl_model_dir), FinetuningConfig(freeze_multi_modal_projector=False), LoraConfig())
    assert _adapted(model) == _language()
    whole = {n for n in _trainable(model) if "lora_" not in n}
    assert {n.removeprefix("base_model.model.").replace(".modules_to_save.default", "") for n in whole} == MERGER
    model.save_pretrained(tmp_path)
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert any("visual.merger.mlp.0" in key for key in saved)


def test_lora_with_the_language_model_frozen_adapts_the_unfrozen_vision_tower_only(tiny_vl_model_dir):
    finetuning = FinetuningConfig(freeze_language_model=True, freeze_vision_tower=False)
    model = attach_method(_base(tiny_vl_model_dir), finetuning, LoraConfig())
    assert _adapted(model) == _vision()


def test_an_adapter_with_nothing_to_adapt_is_refused_by_name(tiny_vl_model_dir):
    with pytest.raises(ModelLoadError) as caught:
        attach_method(_base(tiny_vl_model_dir), FinetuningConfig(freeze_language_model=True), LoraConfig())
    assert "freeze_language_model" in str(caught.value)


def test_oft_takes_the_same_modules_as_lora(tiny_vl_model_dir):
    finetuning = FinetuningConfig(method="oft", oft_block_size=16)
    model = attach_method(_base(tiny_vl_model_dir), finetuning, LoraConfig())
    adapted = {n.removeprefix("base_model.model.").split(".oft_")[0] for n in _trainable(model)}
    assert adapted == _language()


def test_full_trains_everything_but_the_frozen_parts(tiny_vl_model_dir):
    every = {name for name, _ in _base(tiny_vl_model_dir).named_parameters()}
    model = attach_method(_base(tiny_vl_model_dir), FinetuningConfig(method="full"), LoraConfig())
    assert _trainable(model) == {name for name in every if not name.startswith("model.visual.")}
    only_projector = FinetuningConfig(method="full", freeze_language_model=True, freeze_multi_modal_projector=False)
    assert _trainable(attach_method(_base(tiny_vl_model_dir), only_projector, LoraConfig())) == MERGER
    vision = FinetuningConfig(method="full", freeze_vision_tower=False)
    assert _trainable(attach_method(_base(tiny_vl_model_dir), vision, LoraConfig())) == every - MERGER


def test_freeze_trains_the_chosen_layers_and_the_unfrozen_parts(tiny_vl_model_dir):
    finetuning = FinetuningConfig(method="freeze", freeze_trainable_layers=1)
    layer = {
        n for n, _ in _base(tiny_vl_model_dir).named_parameters() if n.startswith("model.language_model.layers.1.")
    }
    assert _trainable(attach_method(_base(tiny_vl_model_dir), finetuning, LoraConfig())) == layer
    opened = finetuning.model_copy(update={"freeze_vision_tower": False, "freeze_multi_modal_projector": False})
    trained = _trainable(attach_method(_base(tiny_vl_model_dir), opened, LoraConfig()))
    # LLaMA-Factory's rule: a layer number picks the vision block of that number as well
    block = {n for n, _ in _base(tiny_vl_model_dir).named_parameters() if n.startswith("model.visual.blocks.1.")}
    assert trained == layer | block | MERGER


def test_a_4bit_base_keeps_its_vision_tower_and_projector_unquantised(tiny_vl_model_dir):
    pytest.importorskip("bitsandbytes")
    from studio.config import ModelConfig, QuantizationConfig, TrainingConfig
    from studio.modeling.compute import resolve_plan
    from studio.modeling.loader import load_base_model

    plan = resolve_plan(QuantizationConfig(method="4bit"), TrainingConfig(), cuda=False)
    model = load_base_model(ModelConfig(name_or_path=str(tiny_vl_model_dir)), str(tiny_vl_model_dir), plan)
    kinds = {name: type(module).__name__ for name, module in model.named_modules()}
    assert {kinds[name] for name in _language()} == {"Linear4bit"}
    assert {kinds[name] for name in _vision() | {"model.visual.merger.mlp.0", "lm_head"}} == {"Linear"}
