"""The optimizer that steps the trainable weights, with the options LLaMA-Factory names them by.

GaLore and APOLLO project the gradient of each 2-D weight they target to a low rank and keep their moments
there; BAdam updates one block of decoder layers at a time. All three were made for full-weight training
(LLaMA-Factory refuses them with LoRA): `optimizer_needs_full_weights` tells which names need it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from studio.config.base import FieldProblem, Section, clean_names, field

OptimizerName = Literal["adamw", "adamw_8bit", "adafactor", "galore", "apollo", "badam"]
# the optional package each name needs, and the extra of qlora-studio that installs it
PACKAGES = {"galore": ("galore_torch", "galore"), "apollo": ("apollo_torch", "apollo"), "badam": ("badam", "badam")}
FULL_WEIGHT_OPTIMIZERS = ("galore", "apollo", "badam")


def missing_package(name: str) -> tuple[str, str] | None:
    """(package, extra) when optimizer `name` needs a package that is not installed; looked up, not imported."""
    import importlib.util

    if name not in PACKAGES:
        return None
    module, extra = PACKAGES[name]
    return None if importlib.util.find_spec(module) is not None else (module, extra)


def optimizer_needs_full_weights(name: str) -> bool:
    """Whether `name` works on the model's own weights (full or freeze fine-tuning), not on an adapter's."""
    return name in FULL_WEIGHT_OPTIMIZERS


class OptimizerConfig(Section):
    name: OptimizerName = field(
        "adamw",
        "adamw (torch's AdamW, two fp32 moments per weight); adamw_8bit (bitsandbytes' AdamW with 8-bit moments, "
        "on CPU too); adafactor (transformers' Adafactor with this learning rate and schedule: factored second "
        "moment, no first moment); galore (GaLore: AdamW on each target weight's gradient projected to galore_rank); "
        "apollo (APOLLO: AdamW moments of a rank-apollo_rank random projection scale each target weight's "
        "gradient); badam (BAdam: AdamW on one block of decoder layers at a time, the others unchanged; embeddings and "
        "output layer are not trained, nor a vision-language model's vision tower and projector, which must stay "
        "frozen). galore, apollo and badam are made for full-weight training and need their "
        "package: pip install 'qlora-studio[galore]' (or [apollo], [badam]).",
    )
    adam_beta1: float = field(0.9, "Adam's beta1 (decay of the first moment).", ge=0, lt=1, advanced=True)
    adam_beta2: float = field(0.999, "Adam's beta2 (decay of the second moment).", ge=0, lt=1, advanced=True)
    adam_epsilon: float = field(1e-8, "Adam's epsilon, added to the denominator.", gt=0, le=1e-2, advanced=True)
    galore_target: list[str] = field(
        ["all"],
        "GaLore: linear layers whose 2-D weights are projected, matched by part of their name (e.g. q_proj, mlp); "
        "['all'] is every linear layer but the output layer (a vision-language model's: the language model's, the "
        "vision tower's when it is not frozen, never the projector's, as in LLaMA-Factory). The other trainable "
        "weights get plain AdamW.",
        min_length=1,
        advanced=True,
    )
    galore_rank: int = field(16, "GaLore: rank the gradients are projected to.", ge=1, advanced=True)
    galore_update_interval: int = field(
        200,
        "GaLore: optimizer steps between recomputations of the projection (an SVD of the gradient).",
        ge=1,
        advanced=True,
    )
    galore_scale: float = field(2.0, "GaLore: scale of the update projected back.", gt=0, advanced=True)
    galore_proj_type: Literal["std", "reverse_std", "right", "left", "full"] = field(
        "std",
        "GaLore: which side is projected: std (the shorter side), reverse_std (the longer), right, left or full "
        "(both).",
        advanced=True,
    )
    galore_layerwise: bool = field(
        False,
        "GaLore stepping each weight inside backward (LLaMA-Factory's galore_layerwise): not offered, as the studio "
        "accumulates, clips and sums gradients after backward.",
        advanced=True,
    )
    apollo_target: list[str] = field(
        ["all"],
        "APOLLO: linear layers whose 2-D weights are scaled by the projected moments, matched by part of their name; "
        "['all'] is every linear layer but the output layer (a vision-language model's: the language model's, the "
        "vision tower's when it is not frozen, never the projector's, as in LLaMA-Factory). The other trainable "
        "weights get plain AdamW.",
        min_length=1,
        advanced=True,
    )
    apollo_rank: int = field(16, "APOLLO: rank of the gradient projection.", ge=1, advanced=True)
    apollo_update_interval: int = field(200, "APOLLO: optimizer steps between new projections.", ge=1, advanced=True)
    apollo_scale: float = field(
        32.0, "APOLLO: scale of the update (its square root multiplies it).", gt=0, advanced=True
    )
    apollo_proj: Literal["svd", "random"] = field(
        "random", "APOLLO: the projection: random (a seeded Gaussian matrix) or svd (of the gradient).", advanced=True
    )
    apollo_proj_type: Literal["std", "right", "left"] = field(
        "std", "APOLLO: which side is projected: std (the shorter side), right or left.", advanced=True
    )
    apollo_scale_type: Literal["channel", "tensor"] = field(
        "channel", "APOLLO: one gradient scale per channel or one per weight.", advanced=True
    )
    apollo_scale_front: bool = field(
        False, "APOLLO: apply the scale before the norm-growth limiter instead of after.", advanced=True
    )
    apollo_layerwise: bool = field(
        False,
        "APOLLO stepping each weight inside backward (LLaMA-Factory's apollo_layerwise): not offered, as the studio "
        "accumulates, clips and sums gradients after backward.",
        advanced=True,
    )
    badam_mode: Literal["layer", "ratio"] = field(
        "layer", "BAdam: layer (one block of decoder layers at a time); ratio is not offered.", advanced=True
    )
    badam_start_block: int | None = field(
        None,
        "BAdam: the block (decoder layer index) trained first; empty starts where badam_switch_mode begins.",
        ge=0,
        advanced=True,
    )
    badam_switch_mode: Literal["ascending", "descending", "random", "fixed"] = field(
        "ascending",
        "BAdam: the order of the blocks: ascending, descending, random (a new seeded order each round) or fixed "
        "(always the start block).",
        advanced=True,
    )
    badam_switch_interval: int = field(
        50,
        "BAdam: optimizer steps on a block before the next one (whose optimizer state starts anew).",
        ge=1,
        advanced=True,
    )

    @field_validator("galore_target", "apollo_target")
    @classmethod
    def _strip_names(cls, names: list[str]) -> list[str]:
        return clean_names(names, FieldProblem("config.no_target_modules"))

    @field_validator("galore_layerwise", "apollo_layerwise")
    @classmethod
    def _not_layerwise(cls, value: bool) -> bool:
        # layer-wise updates step each weight from a hook as its gradient lands, inside backward: the studio's
        # gradient accumulation, CPU lanes, clipping and summed data-parallel gradients all happen after backward
        if value:
            raise FieldProblem("config.layerwise_not_offered")
        return value

    @field_validator("badam_mode")
    @classmethod
    def _layer_mode(cls, value: str) -> str:
        # ratio mode sparsifies each gradient in a hook as backward accumulates it: gradients of CPU lanes and
        # of other processes are added to .grad without it, and gradient clipping cannot take sparse gradients
        if value == "ratio":
            raise FieldProblem("config.badam_ratio_not_offered")
        return value

    @property
    def imports_bitsandbytes(self) -> bool:
        """Whether building the optimizer imports bitsandbytes (its 8-bit AdamW, or GaLore's and APOLLO's packages,
        which import it at their top), so a run that quantises nothing must still let it load."""
        return self.name in ("adamw_8bit", "galore", "apollo")
