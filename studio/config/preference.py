"""How the preference stages (DPO, KTO) weigh answers: the options LlamaBoard exposes, under their own names."""

from __future__ import annotations

from typing import Literal

from studio.config.base import Section, field


class PreferenceConfig(Section):
    beta: float = field(
        0.1,
        "DPO/KTO beta: how far the adapter may move from the reference (smaller lets it move further).",
        zh="偏好 beta",
        zh_help="DPO/KTO 的 beta：模型可偏离参考模型的程度（越小允许偏离越远）。",
        gt=0,
        le=10,
    )
    loss: Literal["sigmoid", "hinge", "ipo"] = field(
        "sigmoid",
        "DPO loss: sigmoid (the DPO paper), hinge (SLiC) or ipo (IPO, on log-probabilities averaged per token).",
        zh="DPO 损失类型",
        zh_help="DPO 损失：sigmoid（DPO 论文）、hinge（SLiC）或 ipo（IPO，使用按 token 平均的对数概率）。",
    )
    label_smoothing: float = field(
        0.0,
        "DPO (sigmoid loss): the assumed share of pairs whose preference label is wrong (cDPO); 0 trusts every label.",
        zh="标签平滑",
        zh_help="DPO（sigmoid 损失）：假定偏好标注出错的比例（cDPO）；0 表示完全相信标注。",
        ge=0,
        lt=0.5,
    )
    ftx: float = field(
        0.0,
        "Weight of an SFT term (per-token negative log-likelihood of the chosen / desirable answer) added to the loss; "
        "0 adds none.",
        zh="SFT 损失权重",
        zh_help="在损失中加入的 SFT 项（选中/期望回答的逐 token 负对数似然）的权重；0 表示不加。",
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
        zh="参考模型",
        zh_help="奖励相对的参考模型：initial（训练开始时的模型：基座，或给出 lora.init_adapter 时的“基座+该适配器”）"
        "或 base（仅基座模型，即使在已有适配器上继续训练）。不会保留第二份权重：参考模型的对数概率在第一步之前一次算好"
        "。",
    )
    desirable_weight: float = field(
        1.0,
        "KTO: weight of the losses of desirable answers.",
        zh="KTO 期望样本权重",
        zh_help="KTO：期望（好）回答的损失权重。",
        gt=0,
    )
    undesirable_weight: float = field(
        1.0,
        "KTO: weight of the losses of undesirable answers.",
        zh="KTO 非期望样本权重",
        zh_help="KTO：非期望（不好）回答的损失权重。",
        gt=0,
    )
