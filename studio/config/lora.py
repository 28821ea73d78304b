"""The low-rank adapter that is actually trained."""

from __future__ import annotations

from pydantic import field_validator

from studio.config.base import FieldProblem, Section, clean_names, field


class LoraConfig(Section):
    rank: int = field(8, "LoRA rank r.", zh="LoRA 秩", zh_help="LoRA 秩 r。", ge=1, le=1024)
    alpha: float = field(
        16,
        "LoRA scaling alpha (scale = alpha / r, or alpha / sqrt(r) with rsLoRA).",
        zh="LoRA 缩放系数",
        zh_help="LoRA 缩放系数 alpha（缩放 = alpha / r；使用 rsLoRA 时为 alpha / sqrt(r)）。",
        gt=0,
    )
    dropout: float = field(
        0.0, "Dropout on the adapter input.", zh="LoRA 随机丢弃", zh_help="适配器输入上的 Dropout。", ge=0, lt=1
    )
    target_modules: list[str] = field(
        ["all"],
        "Module names to adapt; ['all'] means every linear layer except the output head.",
        zh="目标模块",
        zh_help="要适配的模块名；['all'] 表示除输出层外的所有线性层。",
        advanced=True,
        min_length=1,
    )
    loraplus_lr_ratio: float | None = field(
        None,
        "LoRA+: learning-rate ratio of B over A (16 is typical); empty to disable.",
        zh="LoRA+ 学习率比例",
        zh_help="LoRA+：B 矩阵相对 A 矩阵的学习率倍数（常用 16）；留空则不启用。",
        advanced=True,
        gt=0,
    )
    use_rslora: bool = field(
        False,
        "Rank-stabilised LoRA scaling.",
        zh="使用 rsLoRA",
        zh_help="秩稳定的 LoRA 缩放（rsLoRA）。",
        advanced=True,
    )
    use_dora: bool = field(
        False, "Weight-decomposed LoRA (DoRA).", zh="使用 DoRA", zh_help="权重分解的 LoRA（DoRA）。", advanced=True
    )
    init_adapter: str | None = field(
        None,
        "A PEFT adapter folder to continue training (e.g. an SFT run's runs/RUN_ID/adapter before DPO) instead of a "
        "new "
        "adapter; its rank, alpha and target modules then replace the ones above. Empty starts a new adapter.",
        zh="初始适配器",
        zh_help="在这个 PEFT 适配器目录上继续训练（例如 DPO 之前 SFT 训练得到的 runs/RUN_ID/adapter），而不是新建适配"
        "器；"
        "此时秩、缩放系数和目标模块取自该适配器。留空则新建适配器。",
    )

    @field_validator("init_adapter")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("target_modules")
    @classmethod
    def _strip_names(cls, names: list[str]) -> list[str]:
        return clean_names(
            names, FieldProblem("give at least one module name, or ['all']", "请至少填写一个模块名，或 ['all']")
        )
