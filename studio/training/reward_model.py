"""Stage rm: a reward model, the base with LoRA and a scalar value head (value_head.py), trained on preference pairs.

Each answer's reward is the head's reading of the last token of prompt + answer; a pair's loss is
-log sigmoid(r_chosen - r_rejected) (the Bradley-Terry loss LLaMA-Factory's rm stage minimises). A zero head
scores everything 0, so training starts at ln 2. Metrics travel in the preference stages' tally (preference.py):
"rewards" there are the scores, the accuracy the share of pairs scored the right way round.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from studio.data.tokenize_kinds import EncodedPair
from studio.runs.events import Event
from studio.training.preference import TALLY_SIZE, dpo_tally, preference_event, tally_metrics
from studio.training.token_losses import TokenLosses
from studio.training.value_head import ValueHead


class RewardObjective:
    needs_reference: Literal[False] = False
    preference = True
    samples = False
    tallies = True
    stage = "rm"

    def __init__(self, token_losses: TokenLosses, head: ValueHead):
        self.token_losses, self.head = token_losses, head

    def describe(self) -> str:
        return f"{self.token_losses.describe()} Reward model: value head on the last token, pairwise log-sigmoid loss."

    def lane_plans(self, items: list) -> list:
        return self.token_losses.lane_plans(items)

    def step_weight(self, items: list, floor: int = 1) -> int:
        return max(floor, len(items))

    def tokens(self, items: list) -> int:
        return sum(2 * len(pair.prompt) + len(pair.chosen) + len(pair.rejected) for pair in items)

    def cost(self, item: EncodedPair) -> int:
        return self.tokens([item])

    def prepare_step(self, items: list, no_grad_map: object, step: int = 0, share: object = None) -> None:
        pass

    def prepare_eval(self, items: list, no_grad_map: object, share: object = None) -> None:
        pass

    def scores(self, group: list[EncodedPair]) -> torch.Tensor:
        """(n, 2) rewards of (chosen, rejected)."""
        documents = [pair.document(side) for pair in group for side in (pair.chosen, pair.rejected)]
        return self.head(self.token_losses.final_hidden(documents)).view(-1, 2)

    def loss(self, group: list, weight: float) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.scores(group)
        losses = -F.logsigmoid(scores[:, 0] - scores[:, 1])
        return losses.sum() / weight, dpo_tally(losses, scores[:, 0].detach(), scores[:, 1].detach())

    def eval_tally(self, group: list) -> torch.Tensor:
        return self.loss(group, 1.0)[1]

    def empty_tally(self, device: str) -> torch.Tensor:
        return torch.zeros(TALLY_SIZE, dtype=torch.float64, device=device)

    def eval_metrics(self, tally: torch.Tensor, items: list) -> dict[str, float]:
        metrics = tally_metrics(tally)
        return {"eval_loss": metrics.pop("loss"), **metrics}

    def report(self, step: int, split: Literal["train", "eval"], tally: torch.Tensor) -> list[Event]:
        return [preference_event(step, split, tally_metrics(tally))]
