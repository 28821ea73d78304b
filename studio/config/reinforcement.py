"""The reinforcement-learning stages: PPO against a reward model (LlamaBoard's options, under their own names),
GRPO's groups, and the rule-based rewards GRPO scores answers with."""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from studio.config.base import Section, field, regular_expression


class PpoConfig(Section):
    reward_model: str | None = field(
        None,
        "The reward model: a finished rm run (its name in the runs folder) or the folder of an adapter saved with its "
        "value head. It must share the base model of this run.",
    )
    ppo_epochs: int = field(4, "Optimisation passes over each batch of sampled answers.", ge=1, le=16)
    ppo_buffer_size: int = field(
        1,
        "Optimizer steps' worth of prompts answered per rollout (the buffer the ppo_epochs passes go over).",
        ge=1,
        le=16,
    )
    ppo_score_norm: bool = field(False, "Normalise the reward model's scores (running mean and spread).")
    ppo_whiten_rewards: bool = field(False, "Whiten the per-token rewards before computing advantages.", advanced=True)
    ppo_target: float = field(6.0, "KL target of the adaptive KL controller (nats per answer).", gt=0)
    init_kl_coef: float = field(0.2, "Initial weight of the per-token KL penalty to the reference.", ge=0)
    kl_horizon: int = field(10000, "Adaptive KL controller horizon (in answers).", ge=1, advanced=True)
    cliprange: float = field(0.2, "Clip range of the policy ratio.", gt=0, le=1, advanced=True)
    cliprange_value: float = field(0.2, "Clip range of the value predictions.", gt=0, advanced=True)
    vf_coef: float = field(0.1, "Weight of the value loss.", gt=0, advanced=True)
    gamma: float = field(1.0, "Discount factor of GAE.", gt=0, le=1, advanced=True)
    lam: float = field(0.95, "Lambda of GAE.", ge=0, le=1, advanced=True)


class GrpoConfig(Section):
    num_generations: int = field(4, "Answers sampled per prompt (the group its advantages are normalised in).", ge=2)
    beta: float = field(0.04, "Weight of the KL term to the reference (the adapter turned off); 0 drops it.", ge=0)
    epsilon: float = field(0.2, "Clip range of the policy ratio.", gt=0, le=1, advanced=True)
    loss_type: Literal["sequence", "token"] = field(
        "sequence",
        "How token losses are averaged: sequence (each answer's mean, then the mean over answers, as in the GRPO "
        "paper) or token (the mean over every answer token of the step, as DAPO and Dr. GRPO do).",
    )
    scale_rewards: bool = field(
        True,
        "Divide each group's advantages by its reward spread (off: only subtract the group mean, as Dr. GRPO).",
        advanced=True,
    )


class RewardsConfig(Section):
    """GRPO's reward: the weighted sum of these rule-based functions (a weight of 0 leaves a function out)."""

    accuracy: float = field(1.0, "Weight of answer correctness against the data's reference answer.", ge=0)
    accuracy_match: Literal["exact", "numeric", "last_number"] = field(
        "last_number",
        "How an answer is compared with the reference: exact (after normalising case, width, spaces and "
        "punctuation), numeric (the answer's only number equals the reference's), last_number (the last number "
        "in the answer, or in its <answer> part).",
    )
    format: float = field(0.0, "Weight of the format check: 1 when the answer matches format_pattern.", ge=0)
    format_pattern: str = field(
        r"^<think>.*?</think>\s*<answer>.*?</answer>$",
        "Regular expression the whole answer must match (dot matches newlines).",
    )
    length: float = field(0.0, "Weight of the length reward: 1 inside [length_min, length_max] characters.", ge=0)
    length_min: int = field(1, "Shortest answer, in characters, that earns the length reward.", ge=0, advanced=True)
    length_max: int = field(200, "Longest answer, in characters, that earns the length reward.", ge=1, advanced=True)
    repetition: float = field(
        0.0, "Weight of the repetition penalty: minus the share of repeated 3-grams of characters.", ge=0
    )
    contains: float = field(0.0, "Weight of the contains rule: 1 when the answer contains contains_text.", ge=0)
    contains_text: str = field("", "Text the answer should contain (for the contains rule).", advanced=True)
    ends: float = field(0.0, "Weight of the ends rule: 1 when the answer ends with ends_text.", ge=0)
    ends_text: str = field("", "Text the answer should end with (for the ends rule).", advanced=True)
    file: str | None = field(
        None,
        "A Python file defining reward(prompt, answer, reference) -> float, run in the worker. From the page only "
        "when the server was started with --allow-remote-code.",
        advanced=True,
    )
    file_weight: float = field(1.0, "Weight of the reward file's function.", ge=0, advanced=True)

    def weights(self) -> dict[str, float]:
        """Each function with a weight above 0, by name, in a fixed order (charts and tables list them so)."""
        every = {
            "accuracy": self.accuracy,
            "format": self.format,
            "length": self.length,
            "repetition": self.repetition,
            "contains": self.contains,
            "ends": self.ends,
            "file": self.file_weight if self.file else 0.0,
        }
        return {name: weight for name, weight in every.items() if weight > 0}

    @field_validator("format_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        return regular_expression(value)
