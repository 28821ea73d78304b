"""How answers are sampled in Chat, Evaluate and the CLI."""

from __future__ import annotations

from studio.config.base import Section, field


class GenerationConfig(Section):
    system_prompt: str | None = field(
        None,
        "System prompt for the conversation; empty keeps the template's own.",
        zh="系统提示词",
        zh_help="对话使用的系统提示词；留空则使用模板自带的。",
    )
    max_new_tokens: int = field(
        256, "Longest answer, in tokens.", zh="最大生成长度", zh_help="回答的最大长度（token 数）。", ge=1, le=8192
    )
    temperature: float = field(
        0.7,
        "Sampling temperature; 0 means greedy (deterministic).",
        zh="温度",
        zh_help="采样温度；0 表示贪心解码（结果确定）。",
        ge=0,
        le=2,
    )
    top_p: float = field(
        0.9,
        "Nucleus sampling: keep the smallest token set with this probability.",
        zh="Top-p",
        zh_help="核采样：保留累计概率达到该值的最小 token 集合。",
        gt=0,
        le=1,
    )
    top_k: int = field(
        50,
        "Sample among the k most likely tokens (0 disables).",
        zh="Top-k",
        zh_help="只在概率最高的 k 个 token 中采样（0 表示不限制）。",
        ge=0,
    )
    repetition_penalty: float = field(
        1.1,
        "Penalty for repeating tokens (1 disables).",
        zh="重复惩罚",
        zh_help="对重复 token 的惩罚（1 表示不惩罚）。",
        ge=1,
        le=2,
    )
    seed: int = field(
        42,
        "Seed, so the same prompt and settings give the same answer.",
        zh="随机种子",
        zh_help="随机种子：相同的提示与设置得到相同的回答。",
    )
