"""The low-rank adapter that is actually trained."""

from __future__ import annotations

from pydantic import field_validator

from studio.config.base import Section, clean_names, field


class LoraConfig(Section):
    rank: int = field(8, "LoRA rank r.", zh="LoRA 秩", ge=1, le=1024)
    alpha: float = field(16, "LoRA scaling alpha (scale = alpha / r, or alpha / sqrt(r) with rsLoRA).", zh="LoRA 缩放系数", gt=0)
    dropout: float = field(0.0, "Dropout on the adapter input.", zh="LoRA 随机丢弃", ge=0, lt=1)
    target_modules: list[str] = field(
        ["all"],
        "Module names to adapt; ['all'] means every linear layer except the output head.",
        zh="目标模块",
        advanced=True,
        min_length=1,
    )
    loraplus_lr_ratio: float | None = field(
        None, "LoRA+: learning-rate ratio of B over A (16 is typical); empty to disable.", zh="LoRA+ 学习率比例", advanced=True, gt=0
    )
    use_rslora: bool = field(False, "Rank-stabilised LoRA scaling.", zh="使用 rsLoRA", advanced=True)
    use_dora: bool = field(False, "Weight-decomposed LoRA (DoRA).", zh="使用 DoRA", advanced=True)

    @field_validator("target_modules")
    @classmethod
    def _strip_names(cls, names: list[str]) -> list[str]:
        return clean_names(names, "give at least one module name, or ['all']")
