"""How the preference stages (DPO, KTO) weigh answers: the options LlamaBoard exposes, under their own names."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from studio.config.base import FieldProblem, Section, field

# dpo losses measured on the policy alone: no reference model, no reference pass before training
REFERENCE_FREE_LOSSES = ("orpo", "simpo")


class PreferenceConfig(Section):
    beta: float = field(
        0.1,
        "DPO/KTO beta: how far the adapter may move from the reference (smaller lets it move further). "
        "ORPO: the weight of the odds-ratio term (lambda); SimPO: the scale of the length-normalised reward.",
        gt=0,
        le=10,
    )
    loss: Literal["sigmoid", "hinge", "ipo", "orpo", "simpo"] = field(
        "sigmoid",
        "DPO loss (the dpo stage; kto has its own): sigmoid (the DPO paper), hinge (SLiC), ipo (IPO, on "
        "log-probabilities averaged per token), orpo (ORPO: the chosen answer's per-token negative log-likelihood plus "
        "beta times the odds-ratio term) or simpo (SimPO: beta times the gap of per-token average log-probabilities, "
        "less simpo_gamma). orpo and simpo need no reference model: none is computed, and their rewards are beta "
        "times the per-token average log-probabilities.",
    )
    label_smoothing: float = field(
        0.0,
        "DPO (sigmoid loss): the assumed share of pairs whose preference label is wrong (cDPO); 0 trusts every label.",
        ge=0,
        lt=0.5,
    )
    simpo_gamma: float = field(
        0.5,
        "SimPO (simpo loss): the target reward margin gamma by which the chosen answer's reward should exceed the "
        "rejected one's; at that margin the loss is ln 2, and it keeps falling beyond it.",
        ge=0,
        le=10,
    )
    ftx: float = field(
        0.0,
        "Weight of an SFT term (per-token negative log-likelihood of the chosen / desirable answer) added to the loss; "
        "0 adds none.",
        ge=0,
    )
    reference: Literal["initial", "base"] = field(
        "initial",
        "The reference model the rewards are measured against: initial (the model as training starts: the base, or the "
        "base "
        "with lora.init_adapter when one is given) or base (the base model alone, even when training continues an "
        "adapter). "
        "No second copy of the weights is kept: the reference's log-probabilities are computed once before the first "
        "step. Unused by the orpo and simpo losses.",
    )
    desirable_weight: float = field(
        1.0,
        "KTO: weight of the losses of desirable answers.",
        gt=0,
    )
    undesirable_weight: float = field(
        1.0,
        "KTO: weight of the losses of undesirable answers.",
        gt=0,
    )

    @model_validator(mode="after")
    def _smoothing_needs_sigmoid(self) -> PreferenceConfig:
        # as LLaMA-Factory: cDPO's smoothing is a property of the sigmoid loss; the others would ignore it silently
        if self.label_smoothing > 0 and self.loss != "sigmoid":
            raise FieldProblem("config.label_smoothing_needs_sigmoid", loss=self.loss)
        return self

    @property
    def reference_free(self) -> bool:
        """Whether the dpo loss is measured without a reference model (orpo, simpo)."""
        return self.loss in REFERENCE_FREE_LOSSES
