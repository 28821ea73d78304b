"""Which parts of a vision-language model train: the vision tower, the projector and the language model, each kept as
it is or trained as finetuning.freeze_vision_tower / freeze_multi_modal_projector / freeze_language_model say.

The parts are named as LLaMA-Factory names them for each family (module-path pieces matched on dot boundaries, so
both `model.visual.blocks.0` and `visual.blocks.0` are in `visual.blocks`), and they follow its rules:

    lora, oft  lora.target_modules 'all' adapts the linear layers of the language model, and of the vision tower's
               blocks when it is not frozen; never the output layer, the patch embedding (a convolution) nor the
               projector. A named target adapts only the modules of that name outside the frozen parts.
    full       every weight trains except those of the frozen parts.
    freeze     the chosen layers and modules train (the vision tower's blocks of the same numbers too, when it is
               not frozen: LLaMA-Factory matches layer numbers anywhere in a name), and the projector when it is not
               frozen; never a frozen part.

One difference from LLaMA-Factory: an adapter run with the projector not frozen trains the projector whole (as
freeze does, and as LLaVA's LoRA recipe does), where LLaMA-Factory leaves it untouched and the switch does nothing.
4-bit bases keep the vision tower and projector unquantised (`quantization_skips`): a projector that trains whole
cannot be 4-bit, and the vision tower is a small part of the weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from studio.modeling.sources import ModelLoadError

if TYPE_CHECKING:
    import torch

    from studio.config import FinetuningConfig, LoraConfig


@dataclass(frozen=True)
class VisionParts:
    vision: tuple[str, ...]  # the vision tower, without its projector
    projector: tuple[str, ...]  # what turns image features into language-model inputs
    language: tuple[str, ...] = ("language_model", "lm_head")
    no_lora: tuple[str, ...] = ("patch_embed",)  # a convolution peft's LoRA would refuse
    unquantised: tuple[str, ...] = ("model.visual", "visual", "lm_head")  # bitsandbytes' skip list (from the start)


_QWEN2 = VisionParts(vision=("visual.patch_embed", "visual.blocks"), projector=("visual.merger",))
_QWEN3 = VisionParts(
    vision=("visual.pos_embed", "visual.patch_embed", "visual.blocks", "visual.deepstack_merger_list"),
    projector=("visual.merger",),
)
PARTS = {"qwen2_vl": _QWEN2, "qwen2_5_vl": _QWEN2, "qwen3_vl": _QWEN3, "qwen3_vl_moe": _QWEN3}


def parts_of(model: torch.nn.Module) -> VisionParts | None:
    """The parts of a vision-language model (transformers' model, before peft wraps it), or None for a text model."""
    config = getattr(model, "config", None)
    return PARTS.get(getattr(config, "model_type", None) or "")


def quantization_skips(family: str | None) -> list[str] | None:
    """Module names bitsandbytes leaves unquantised in a 4-bit base of this family (None: its default skips)."""
    parts = PARTS.get(family or "")
    return list(parts.unquantised) if parts else None


def inside(name: str, keys: tuple[str, ...]) -> bool:
    padded = f".{name}."
    return any(f".{key}." in padded for key in keys)


def frozen_keys(parts: VisionParts, finetuning: FinetuningConfig) -> tuple[str, ...]:
    """The parts the freeze switches keep as they are (LLaMA-Factory's forbidden modules)."""
    keys: tuple[str, ...] = ()
    if finetuning.freeze_vision_tower:
        keys += parts.vision
    if finetuning.freeze_multi_modal_projector:
        keys += parts.projector
    if finetuning.freeze_language_model:
        keys += parts.language
    return keys


def projection_skips(model: torch.nn.Module) -> tuple[str, ...]:
    """The parts of a vision-language model that GaLore's and APOLLO's targets 'all' leave out: the projector, which
    trains (when not frozen) with plain AdamW, as LLaMA-Factory's find_all_linear_modules leaves it out. The vision
    tower's blocks are in 'all' only when freeze_vision_tower is off, as there: `freeze_parts` (full) and freeze's
    chosen layers leave a frozen part no trainable weight, and only trainable weights are projected. () for a text
    model."""
    parts = parts_of(model)
    return parts.projector if parts else ()


def adapter_config(model: torch.nn.Module, finetuning: FinetuningConfig, lora: LoraConfig) -> LoraConfig:
    """`lora` with the modules an adapter may take spelled out by full name (the frozen parts, the projector, the
    patch embedding and the output layer left out) and the projector trained whole when it is not frozen."""
    parts = parts_of(model)
    if parts is None:
        return lora
    get_output = getattr(model, "get_output_embeddings", None)
    output = get_output() if callable(get_output) else None
    excluded = frozen_keys(parts, finetuning) + parts.projector + parts.no_lora
    targets = [
        name
        for name, module in model.named_modules()
        if name and module is not output and not inside(name, excluded) and _wanted(name, module, lora.target_modules)
    ]
    if not targets:  # peft refuses an adapter with nothing to adapt
        raise ModelLoadError("modeling.vision_nothing_trains")
    whole = [] if finetuning.freeze_multi_modal_projector else list(parts.projector)
    saved = list(dict.fromkeys(lora.modules_to_save + whole))
    return lora.model_copy(update={"target_modules": targets, "modules_to_save": saved})


def _wanted(name: str, module: torch.nn.Module, targets: list[str]) -> bool:
    if targets == ["all"]:
        return _linear(module)
    return any(name == target or name.endswith("." + target) for target in targets)  # peft's matching


def _linear(module: torch.nn.Module) -> bool:
    """A linear layer, plain or quantised (bitsandbytes' Linear4bit), as LLaMA-Factory finds them."""
    kind = type(module).__name__
    return "Linear" in kind and "Embedding" not in kind


def freeze_parts(model: torch.nn.Module, finetuning: FinetuningConfig, chosen: set[str] | None = None) -> None:
    """full (`chosen` None: every weight) and freeze (`chosen`: the parameters its layers and modules name): the
    frozen parts' weights off, the projector on for freeze when it is not frozen; refused when nothing trains."""
    parts = parts_of(model)
    if parts is None:
        return
    keys = frozen_keys(parts, finetuning)
    trainable = 0
    for name, parameter in model.named_parameters():
        projector = not finetuning.freeze_multi_modal_projector and inside(name, parts.projector)
        wanted = chosen is None or name in chosen or projector
        parameter.requires_grad_(wanted and not inside(name, keys))
        trainable += parameter.requires_grad
    if not trainable:
        raise ModelLoadError("modeling.vision_nothing_trains")
