"""A finished reward model (stage rm) loaded back to score texts: for PPO's rewards and for the page's score box.

The reward model is its base model with its LoRA adapter and its value head (`value_head.safetensors`), found by
run name (the run folder's adapter) or by an adapter folder. It is a model of its own, frozen and in eval mode,
loaded as the run's plan says (4-bit where the policy is).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from studio.data.tokenize import IGNORE_INDEX, Encoded
from studio.runs.reward_models import RewardModelError, check_same_base
from studio.training.value_head import ValueHead, head_from, read_head

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from studio.config import ModelConfig
    from studio.modeling.compute import ComputePlan


class RewardScorer:
    def __init__(self, model: Any, head: ValueHead, device: str):
        from studio.training.token_losses import TokenLosses

        self.model, self.head, self.device = model, head, device
        self.token_losses = TokenLosses(model, device=device, packing=True, token_budget=4096, batch_size=8)

    @classmethod
    def load(
        cls,
        folder: Path,
        model: ModelConfig,
        model_path: str,
        plan: ComputePlan,
        tokenizer: PreTrainedTokenizerBase | None = None,
        cutoff_len: int | None = None,
    ) -> RewardScorer:
        """`tokenizer` and `cutoff_len`: the run's, so the base is resized and RoPE-scaled as the policy's."""
        from peft import PeftModel

        from studio.modeling.loader import load_base_model

        check_same_base(folder, model)
        base = load_base_model(model, model_path, plan, tokenizer=tokenizer, cutoff_len=cutoff_len)
        try:
            peft_model = PeftModel.from_pretrained(base, str(folder), is_trainable=False)
        except (ValueError, RuntimeError, OSError) as error:
            raise RewardModelError("training.reward_model_unloadable", folder=folder, error=error) from None
        head = head_from(read_head(folder) or {}).to(plan.device)  # reward_model_folder found the file
        peft_model.eval().requires_grad_(False)
        return cls(peft_model, head, plan.device)

    def score_ids(self, sequences: list[list[int]]) -> list[float]:
        """The reward of each token sequence (prompt and answer), read at its last token."""
        documents = [Encoded(ids, [IGNORE_INDEX] * len(ids), False) for ids in sequences]
        scores: list[float] = []
        with torch.no_grad():
            for start in range(0, len(documents), 16):
                hidden = self.token_losses.final_hidden(documents[start : start + 16])
                scores += self.head(hidden).float().tolist()
        return scores
