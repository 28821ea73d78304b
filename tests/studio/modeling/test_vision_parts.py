"""What trains in a vision-language model under each method and freeze switch, named parameter by parameter, on the
tiny model of each family (vision blocks 0-1, the projector `merger`, language layers 0-1; Qwen3-VL's deepstack
merger 0 belongs to its vision tower), as LLaMA-Factory decides it; and a 4-bit base that keeps its vision tower and
projector unquantised."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from studio.config import FinetuningConfig, LoraConfig
from studio.modeling.methods import attach_method
from studio.modeling.sources import ModelLoadError
from studio.modeling.vision import vision_family

LANGUAGE_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Names:
    """A family's names, written out from transformers' modeling files (not found by the code under test)."""

    block_linears: tuple[str, ...]  # in each vision block
    merger: tuple[str, ...]  # the projector's parameters, under model.visual.merger
    tower_linears: tuple[str, ...] = ()  # the vision tower's linear layers outside its blocks

    @property
    def projector(self) -> set[str]:
        return {f"model.visual.merger.{name}" for name in self.merger}

    @property
    def projector_linear(self) -> str:
        return "model.visual.merger." + self.merger[-1].removesuffix(".bias").removesuffix(".weight")


_LINEAR_MERGER = ("mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias")
_QWEN3_MERGER = ("linear_fc1.weight", "linear_fc1.bias", "linear_fc2.weight", "linear_fc2.bias")
NAMES = {
    "qwen2_vl": Names(("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"), ("ln_q.weight", "ln_q.bias", *_LINEAR_MERGER)),
    "qwen2_5_vl": Names(  # a gated MLP in the blocks, an RMS norm (no bias) in the merger
        ("attn.qkv", "attn.proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"), ("ln_q.weight", *_LINEAR_MERGER)
    ),
    "qwen3_vl": Names(
        ("attn.qkv", "attn.proj", "mlp.linear_fc1", "mlp.linear_fc2"),
        ("norm.weight", "norm.bias", *_QWEN3_MERGER),
        tower_linears=("deepstack_merger_list.0.linear_fc1", "deepstack_merger_list.0.linear_fc2"),
    ),
}


@pytest.fixture
def names(each_vl_model_dir) -> Names:
    return NAMES[str(vision_family(each_vl_model_dir))]


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


def _vision(names: Names) -> set[str]:
    blocks = {f"model.visual.blocks.{i}.{m}" for i in (0, 1) for m in names.block_linears}
    return blocks | {f"model.visual.{m}" for m in names.tower_linears}


def test_lora_all_adapts_the_language_model_s_linear_layers_only(each_vl_model_dir):
    model = attach_method(_base(each_vl_model_dir), FinetuningConfig(), LoraConfig())
    assert _adapted(model) == _language()
    assert all("lora_" in name for name in _trainable(model))  # nothing else trains: no projector, no vision tower


def test_lora_with_the_vision_tower_unfrozen_adapts_its_blocks_too_but_never_the_patch_embedding(
    each_vl_model_dir, names
):
    model = attach_method(_base(each_vl_model_dir), FinetuningConfig(freeze_vision_tower=False), LoraConfig())
    assert _adapted(model) == _language() | _vision(names)


def test_named_lora_targets_stay_out_of_frozen_parts(each_vl_model_dir):
    lora = LoraConfig(target_modules=["q_proj", "qkv"])
    model = attach_method(_base(each_vl_model_dir), FinetuningConfig(), lora)
    assert _adapted(model) == _language(("q_proj",))
    unfrozen = attach_method(_base(each_vl_model_dir), FinetuningConfig(freeze_vision_tower=False), lora)
    assert _adapted(unfrozen) == _language(("q_proj",)) | {f"model.visual.blocks.{i}.attn.qkv" for i in (0, 1)}


def test_lora_with_the_projector_unfrozen_trains_it_whole_and_saves_it_with_the_adapter(
    each_vl_model_dir, names, tmp_path
):
    model = attach_method(_base(each_vl_model_dir), FinetuningConfig(freeze_multi_modal_projector=False), LoraConfig())
    assert _adapted(model) == _language()
    whole = {n for n in _trainable(model) if "lora_" not in n}
    assert {
        n.removeprefix("base_model.model.").replace(".modules_to_save.default", "") for n in whole
    } == names.projector
    model.save_pretrained(tmp_path)
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert any(names.projector_linear.removeprefix("model.") in key for key in saved)


def test_lora_with_the_language_model_frozen_adapts_the_unfrozen_vision_tower_only(each_vl_model_dir, names):
    finetuning = FinetuningConfig(freeze_language_model=True, freeze_vision_tower=False)
    model = attach_method(_base(each_vl_model_dir), finetuning, LoraConfig())
    assert _adapted(model) == _vision(names)


def test_an_adapter_with_nothing_to_adapt_is_refused_by_name(each_vl_model_dir):
    with pytest.raises(ModelLoadError) as caught:
        attach_method(_base(each_vl_model_dir), FinetuningConfig(freeze_language_model=True), LoraConfig())
    assert "freeze_language_model" in str(caught.value)


def test_oft_takes_the_same_modules_as_lora(each_vl_model_dir):
    finetuning = FinetuningConfig(method="oft", oft_block_size=16)
    model = attach_method(_base(each_vl_model_dir), finetuning, LoraConfig())
    adapted = {n.removeprefix("base_model.model.").split(".oft_")[0] for n in _trainable(model)}
    assert adapted == _language()


def test_full_trains_everything_but_the_frozen_parts(each_vl_model_dir, names):
    every = {name for name, _ in _base(each_vl_model_dir).named_parameters()}
    model = attach_method(_base(each_vl_model_dir), FinetuningConfig(method="full"), LoraConfig())
    assert _trainable(model) == {name for name in every if not name.startswith("model.visual.")}
    only_projector = FinetuningConfig(method="full", freeze_language_model=True, freeze_multi_modal_projector=False)
    assert _trainable(attach_method(_base(each_vl_model_dir), only_projector, LoraConfig())) == names.projector
    vision = FinetuningConfig(method="full", freeze_vision_tower=False)
    assert _trainable(attach_method(_base(each_vl_model_dir), vision, LoraConfig())) == every - names.projector


def test_freeze_trains_the_chosen_layers_and_the_unfrozen_parts(each_vl_model_dir, names):
    finetuning = FinetuningConfig(method="freeze", freeze_trainable_layers=1)
    layer = {
        n for n, _ in _base(each_vl_model_dir).named_parameters() if n.startswith("model.language_model.layers.1.")
    }
    assert _trainable(attach_method(_base(each_vl_model_dir), finetuning, LoraConfig())) == layer
    opened = finetuning.model_copy(update={"freeze_vision_tower": False, "freeze_multi_modal_projector": False})
    trained = _trainable(attach_method(_base(each_vl_model_dir), opened, LoraConfig()))
    # LLaMA-Factory's rule: a layer number picks the vision block of that number as well
    block = {n for n, _ in _base(each_vl_model_dir).named_parameters() if n.startswith("model.visual.blocks.1.")}
    assert trained == layer | block | names.projector


def test_a_4bit_base_keeps_its_vision_tower_and_projector_unquantised(each_vl_model_dir, names):
    pytest.importorskip("bitsandbytes")
    from studio.config import ModelConfig, QuantizationConfig, TrainingConfig
    from studio.modeling.compute import resolve_plan
    from studio.modeling.loader import load_base_model

    plan = resolve_plan(QuantizationConfig(method="4bit"), TrainingConfig(), cuda=False)
    model = load_base_model(ModelConfig(name_or_path=str(each_vl_model_dir)), str(each_vl_model_dir), plan)
    kinds = {name: type(module).__name__ for name, module in model.named_modules()}
    assert {kinds[name] for name in _language()} == {"Linear4bit"}
    assert {kinds[name] for name in _vision(names) | {names.projector_linear, "lm_head"}} == {"Linear"}
