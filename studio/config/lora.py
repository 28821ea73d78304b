"""The low-rank adapter that is actually trained."""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from studio.config.base import FieldProblem, Section, clean_names, field


class LoraConfig(Section):
    rank: int = field(8, "LoRA rank r.", ge=1, le=1024)
    alpha: float = field(
        16,
        "LoRA scaling alpha (scale = alpha / r, or alpha / sqrt(r) with rsLoRA).",
        gt=0,
    )
    dropout: float = field(0.0, "Dropout on the adapter input.", ge=0, lt=1)
    target_modules: list[str] = field(
        ["all"],
        "Module names to adapt; ['all'] means every linear layer except the output head.",
        advanced=True,
        min_length=1,
    )
    loraplus_lr_ratio: float | None = field(
        None,
        "LoRA+: learning-rate ratio of B over A (16 is typical); empty to disable.",
        advanced=True,
        gt=0,
    )
    use_rslora: bool = field(
        False,
        "Rank-stabilised LoRA scaling.",
        advanced=True,
    )
    use_dora: bool = field(False, "Weight-decomposed LoRA (DoRA).", advanced=True)
    init: Literal["default", "pissa", "olora", "loftq"] = field(
        "default",
        "How a new adapter starts: default (B = 0: the model starts as the base); pissa (A and B from the top "
        "singular vectors of each weight, the base keeps the rest: learns faster, and base + adapter equals the "
        "original model); olora (from a QR decomposition of each weight, likewise); loftq (on a 4-bit base: B·A "
        "starts as the best rank-r part of what rounding the weights to 4 bits lost, so base + adapter starts closer "
        "to the original model). pissa and olora need full-precision base weights (quantization.method none) and are "
        "saved as a plain LoRA adapter of the original base (rank 2r), usable as any other; loftq needs "
        "quantization.method 4bit.",
        advanced=True,
    )
    modules_to_save: list[str] = field(
        [],
        "Modules trained whole beside the adapter and saved with it (e.g. embed_tokens, lm_head after adding tokens).",
        advanced=True,
    )
    init_adapter: str | None = field(
        None,
        "A PEFT adapter folder to continue training (e.g. an SFT run's runs/RUN_ID/adapter before DPO) instead of a "
        "new "
        "adapter; its rank, alpha and target modules then replace the ones above. Empty starts a new adapter.",
    )

    @field_validator("init_adapter")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("target_modules")
    @classmethod
    def _strip_names(cls, names: list[str]) -> list[str]:
        return clean_names(names, FieldProblem("config.no_target_modules"))

    @field_validator("modules_to_save")
    @classmethod
    def _strip_saved(cls, names: list[str]) -> list[str]:
        return [name.strip() for name in names if name.strip()]
