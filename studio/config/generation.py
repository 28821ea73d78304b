"""How answers are sampled in Chat, Evaluate and the CLI."""

from __future__ import annotations

from studio.config.base import Section, field


class GenerationConfig(Section):
    system_prompt: str | None = field(
        None,
        "System prompt for the conversation; empty keeps the template's own.",
    )
    max_new_tokens: int = field(256, "Longest answer, in tokens.", ge=1, le=8192)
    temperature: float = field(
        0.7,
        "Sampling temperature; 0 means greedy (deterministic).",
        ge=0,
        le=2,
    )
    top_p: float = field(
        0.9,
        "Nucleus sampling: keep the smallest token set with this probability.",
        gt=0,
        le=1,
    )
    top_k: int = field(
        50,
        "Sample among the k most likely tokens (0 disables).",
        ge=0,
    )
    repetition_penalty: float = field(
        1.1,
        "Penalty for repeating tokens (1 disables).",
        ge=1,
        le=2,
    )
    seed: int = field(
        42,
        "Seed, so the same prompt and settings give the same answer.",
    )
