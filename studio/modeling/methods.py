"""What a run trains, per finetuning.method: a LoRA or OFT adapter through peft, every weight (full), or the layers
and modules freeze names (LLaMA-Factory's freeze_trainable_layers / _modules / freeze_extra_modules)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from studio.config import FinetuningConfig, LoraConfig
from studio.modeling.sources import ModelLoadError
from studio.modeling.vision_parts import adapter_config, freeze_parts, parts_of

if TYPE_CHECKING:
    from transformers import PreTrainedModel

_LAYER_INDEX = re.compile(r"\.(\d+)\.")  # the decoder layer a parameter belongs to: model.layers.7.mlp...


def attach_method(
    model: PreTrainedModel,
    finetuning: FinetuningConfig,
    lora: LoraConfig,
    *,
    model_path: str = "",
    initial_dir: Path | None = None,
) -> torch.nn.Module:
    """The frozen `model` made trainable as `finetuning.method` says. `initial_dir`: where a PiSSA or OLoRA adapter's
    starting point is kept (its final save converts against it); `model_path`: the base's weights, which LoftQ reads."""
    from studio.modeling.loader import attach_lora

    if finetuning.method == "full":
        model.requires_grad_(True)
        freeze_parts(model, finetuning)  # a vision-language model's frozen parts
        return model
    if finetuning.method == "freeze":
        return unfreeze_chosen(model, finetuning)
    if not lora.init_adapter:  # a vision-language model's adapter takes the language model only, by default
        lora = adapter_config(model, finetuning, lora)
    if finetuning.method == "oft":
        return attach_oft(model, finetuning, lora)
    adapter = attach_lora(model, lora)
    if lora.init in ("pissa", "olora") and initial_dir is not None and not lora.init_adapter:
        adapter.save_pretrained(str(initial_dir))  # before the first step: the base's residual is defined by it
    if lora.init == "loftq" and not lora.init_adapter:
        from studio.modeling.loftq import start_at_rounding_error

        start_at_rounding_error(adapter, model_path)
    return adapter


def attach_oft(model: PreTrainedModel, finetuning: FinetuningConfig, lora: LoraConfig) -> torch.nn.Module:
    from peft import OFTConfig, get_peft_model

    if lora.init_adapter:
        from studio.modeling.loader import continue_adapter

        return continue_adapter(model, lora.init_adapter)
    targets = "all-linear" if lora.target_modules == ["all"] else lora.target_modules
    config = OFTConfig(
        r=0,  # the block size decides the blocks (peft takes one of the two)
        oft_block_size=finetuning.oft_block_size,
        target_modules=targets,
        module_dropout=lora.dropout,
        modules_to_save=lora.modules_to_save or None,
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(model, config)
    except ValueError as error:  # a block size that does not divide a layer's width, an unknown module
        raise ModelLoadError("modeling.oft_unattachable", error=error) from None


def unfreeze_chosen(model: PreTrainedModel, finetuning: FinetuningConfig) -> PreTrainedModel:
    """Make trainable the parameters of the chosen decoder layers' modules and the extra modules; refuse names that
    match nothing, listing what the model has."""
    names = [name for name, _ in model.named_parameters()]
    layers = trainable_layers(_layer_count(model), finetuning.freeze_trainable_layers)
    modules, extra = finetuning.freeze_trainable_modules, finetuning.freeze_extra_modules
    chosen = {name for name in names if _in_layers(name, layers, modules) or _is_extra(name, extra)}
    for wanted in [m for m in modules if m != "all"] + extra:
        if not any(wanted in name.split(".") for name in chosen):
            raise ModelLoadError("modeling.freeze_no_module", module=wanted, available=", ".join(_module_names(names)))
    if parts_of(model) is not None:  # a vision-language model: its frozen parts out, an unfrozen projector in
        freeze_parts(model, finetuning, chosen)
        return model
    if not chosen:
        raise ModelLoadError("modeling.freeze_nothing_trains")
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name in chosen)
    return model


def trainable_layers(count: int, wanted: int) -> range:
    """The last `wanted` layers, or the first -`wanted` when negative (as LLaMA-Factory counts them)."""
    return range(max(0, count - wanted), count) if wanted > 0 else range(min(count, -wanted))


def _layer_count(model: PreTrainedModel) -> int:
    config = model.config
    count = getattr(config, "num_hidden_layers", None) or getattr(config.get_text_config(), "num_hidden_layers", None)
    return int(count or 0)


def _in_layers(name: str, layers: range, modules: list[str]) -> bool:
    match = _LAYER_INDEX.search(name)
    if match is None or int(match.group(1)) not in layers:
        return False
    return modules == ["all"] or any(module in name.split(".") for module in modules)


def _is_extra(name: str, extra: list[str]) -> bool:
    return _LAYER_INDEX.search(name) is None and any(module in name.split(".") for module in extra)


def _module_names(names: list[str]) -> list[str]:
    """The module names a freeze config can use: those inside layers (mlp, q_proj) and outside (embed_tokens)."""
    found: set[str] = set()
    for name in names:
        parts = name.split(".")[:-1]  # the parameter's own name (weight, bias) is no module
        match = _LAYER_INDEX.search(name)
        found.update(parts[parts.index(match.group(1)) + 1 :] if match else parts[-1:])
    return sorted(found)
