"""How the preference stages (DPO, KTO) weigh answers: the options LlamaBoard exposes, under their own names."""

from __future__ import annotations

from typing import Literal

from studio.config.base import Section, field


class PreferenceConfig(Section):
    beta: float = field(
        0.1,
        "DPO/KTO beta: how far the adapter may move from the reference (smaller lets it move further).",
        gt=0,
        le=10,
    )
    loss: Literal["sigmoid", "hinge", "ipo"] = field(
        "sigmoid",
        "DPO loss: sigmoid (the DPO paper), hinge (SLiC) or ipo (IPO, on log-probabilities averaged per token).",
    )
    label_smoothing: float = field(
        0.0,
        "DPO (sigmoid loss): the assumed share of pairs whose preference label is wrong (cDPO); 0 trusts every label.",
        ge=0,
        lt=0.5,
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
        "step.",
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
