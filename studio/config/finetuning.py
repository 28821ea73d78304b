"""Which weights a run trains: a LoRA or OFT adapter, every weight, or a chosen part of the model (freeze)."""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from studio.config.base import Section, field

# methods whose result is a whole model (run/model/) rather than an adapter
WHOLE_MODEL_METHODS = ("full", "freeze")


class FinetuningConfig(Section):
    method: Literal["lora", "full", "freeze", "oft"] = field(
        "lora",
        "lora: a low-rank adapter (the lora section; QLoRA with a 4- or 8-bit base); oft: an orthogonal adapter "
        "through peft (lora.target_modules, finetuning.oft_block_size); full: every weight (no quantisation; AdamW "
        "keeps two fp32 moments per weight, so about 16 bytes per parameter); freeze: only the layers and modules "
        "named below, the rest frozen. full and freeze save a whole model (run/model/) instead of an adapter.",
    )
    freeze_trainable_layers: int = field(
        2,
        "freeze: how many decoder layers train, counted from the last (2: the last two) or, when negative, from the "
        "first (-2: the first two); 0 trains no whole layer (only freeze_extra_modules).",
        ge=-1024,
        le=1024,
    )
    freeze_trainable_modules: list[str] = field(
        ["all"],
        "freeze: which modules of those layers train, by name (mlp, self_attn, q_proj, ...); ['all'] is every module "
        "of the layers.",
        advanced=True,
    )
    freeze_extra_modules: list[str] = field(
        [],
        "freeze: modules outside the decoder layers that train as well, by name (embed_tokens, norm, lm_head).",
        advanced=True,
    )
    oft_block_size: int = field(
        32,
        "oft: size of the orthogonal blocks (each adapted layer's input dimension must divide by it).",
        ge=1,
        le=4096,
        advanced=True,
    )

    freeze_vision_tower: bool = field(
        True,
        "Vision-language models: keep the vision encoder's weights as they are (LLaMA-Factory's freeze_vision_tower). "
        "Off: an adapter also takes the linear layers of its blocks (lora.target_modules 'all'), full trains it whole, "
        "freeze trains its blocks of the chosen layer numbers.",
    )
    freeze_multi_modal_projector: bool = field(
        True,
        "Vision-language models: keep the projector that turns image features into language-model inputs as it is "
        "(LLaMA-Factory's freeze_multi_modal_projector). Off: it trains whole with every method, saved with an "
        "adapter too (LLaMA-Factory's LoRA leaves it as it is either way).",
    )
    freeze_language_model: bool = field(
        False,
        "Vision-language models: keep the language model as it is and train only what the two switches above leave "
        "trainable (LLaMA-Factory's freeze_language_model).",
        advanced=True,
    )

    @field_validator("freeze_trainable_modules", "freeze_extra_modules")
    @classmethod
    def _strip_names(cls, names: list[str]) -> list[str]:
        return [name.strip() for name in names if name.strip()]

    @property
    def trains_whole_model(self) -> bool:
        """Whether the run's result is a whole model (full, freeze) rather than an adapter (lora, oft)."""
        return self.method in WHOLE_MODEL_METHODS
