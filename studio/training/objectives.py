"""What each training stage minimises, over the trainer's one packed forward pass (`TokenLosses`).

    sft, pt   mean next-token loss over every labelled token of the step (pt: every token of raw
              text, each document its own piece of a packed row)
    dpo       mean DPO loss over the step's pairs; the prompt runs once for both answers where
              the layout allows it (`TokenLosses.shares_prompts`) and the pair shows no pictures, else
              prompt and answer run as one document per answer; orpo and simpo need no reference
    kto       mean KTO loss over the step's examples, against the step's KL estimate
    rm        mean pairwise loss of a value head's scores (reward_model.py)
    grpo      clipped policy loss of sampled answers, advantages normalised per prompt (grpo.py)
    ppo       clipped policy and value losses against a reward model, KL-penalised (ppo.py)

The trainer sees one interface (`lane_plans`, `step_weight`, `loss`, `eval_tally`, `eval_metrics`,
and for preference stages `store_reference` / `prepare_step`); `build_objective` is the registry.
A loss comes back already divided by the step's weight, so micro-batches add up to the step's mean.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch

from studio.config import PreferenceConfig
from studio.data.tokenize import Encoded
from studio.runs.events import Event
from studio.training.batches import predicted_tokens
from studio.training.grpo import GrpoObjective
from studio.training.ppo import PpoObjective
from studio.training.preference import (
    TALLY_SIZE,
    dpo_tally,
    kl_estimate,
    kto_losses,
    kto_tally,
    pair_losses,
    preference_event,
    tally_metrics,
)
from studio.training.reinforce import NoGradMap, Reinforcement, Share, everything
from studio.training.reward_model import RewardObjective
from studio.training.shared_prompts import shareable
from studio.training.token_losses import TokenLosses
from studio.training.value_head import ValueHead


class TokenObjective:
    """Supervised fine-tuning and pretraining: the studio's SFT loss, unchanged."""

    needs_reference: Literal[False] = False  # Literal: the trainer's check narrows an Objective to a preference one
    preference = False
    samples = False  # whether the stage samples answers (ppo, grpo): each process then knows only its own
    tallies = False  # whether losses come with a metric tally (summed over passes and ranks, reported by `report`)

    def __init__(self, token_losses: TokenLosses, stage: str = "sft"):
        self.token_losses, self.stage = token_losses, stage

    def units(self, items: list) -> list[Encoded]:
        """What is packed: the examples themselves, or a pretraining row's documents (kept apart)."""
        return [piece for row in items for piece in row.pieces] if self.stage == "pt" else items

    def describe(self) -> str:
        return self.token_losses.describe()

    def lane_plans(self, items: list) -> list:
        return self.token_losses.lane_plans(self.units(items))

    def step_weight(self, items: list, floor: int = 1) -> int:
        # every token of the step weighs the same, however the examples are split into forward passes
        return max(floor, predicted_tokens(self.units(items)))

    def tokens(self, items: list) -> int:
        return sum(len(item.input_ids) for item in items)

    def cost(self, item: Any) -> int:
        """What an example costs to train, for dealing a step's examples to the ranks."""
        return self.tokens([item])

    def prepare_step(self, items: list, no_grad_map: NoGradMap, step: int = 0, share: Share = everything) -> None:
        pass

    def prepare_eval(self, items: list, no_grad_map: NoGradMap, share: Share = everything) -> None:
        pass

    def loss(self, group: list[Encoded], weight: float) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.token_losses(group).sum() / weight, None

    def report(self, step: int, split: Literal["train", "eval"], tally: torch.Tensor) -> list[Event]:
        return []

    def eval_tally(self, group: list[Encoded]) -> torch.Tensor:
        return self.token_losses(group).double().sum()

    def empty_tally(self, device: str) -> torch.Tensor:
        """The eval tally of no examples (a rank whose share of the validation split is empty)."""
        return torch.zeros((), dtype=torch.float64, device=device)

    def eval_metrics(self, tally: torch.Tensor, items: list) -> dict[str, float]:
        return {"eval_loss": tally.item() / max(1, predicted_tokens(self.units(items)))}


class _PreferenceObjective:
    needs_reference: bool = True  # False for dpo's reference-free losses (orpo, simpo)
    preference = True
    samples = False
    tallies = True
    stage: str

    def __init__(self, token_losses: TokenLosses, config: PreferenceConfig):
        self.token_losses, self.config = token_losses, config

    def lane_plans(self, items: list) -> list:
        return self.token_losses.lane_plans(items)

    def step_weight(self, items: list, floor: int = 1) -> int:
        return max(floor, len(items))

    def cost(self, item: Any) -> int:
        return self.tokens([item])

    def tokens(self, items: list) -> int:
        raise NotImplementedError  # each stage's own

    def prepare_step(self, items: list, no_grad_map: NoGradMap, step: int = 0, share: Share = everything) -> None:
        pass

    def prepare_eval(self, items: list, no_grad_map: NoGradMap, share: Share = everything) -> None:
        self.prepare_step(items, no_grad_map)  # KTO's KL estimate, over the validation split

    def loss(self, group: list, weight: float) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError  # each stage's own

    def report(self, step: int, split: Literal["train", "eval"], tally: torch.Tensor) -> list[Event]:
        return [preference_event(step, split, tally_metrics(tally, with_kl=self.stage == "kto"))]

    def eval_tally(self, group: list) -> torch.Tensor:
        return self.loss(group, 1.0)[1]

    def empty_tally(self, device: str) -> torch.Tensor:
        return torch.zeros(TALLY_SIZE, dtype=torch.float64, device=device)

    def eval_metrics(self, tally: torch.Tensor, items: list) -> dict[str, float]:
        metrics = tally_metrics(tally, with_kl=self.stage == "kto")
        return {"eval_loss": metrics.pop("loss"), **metrics}

    def _document_logps(self, documents: list[Encoded]) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed log-probability, label tokens) of each document's answer."""
        counts = [predicted_tokens([document]) for document in documents]
        return _answer_sums(self.token_losses(documents), counts), torch.tensor(counts, dtype=torch.float32)


class DpoObjective(_PreferenceObjective):
    stage = "dpo"

    def __init__(self, token_losses: TokenLosses, config: PreferenceConfig):
        super().__init__(token_losses, config)
        self.needs_reference = not config.reference_free

    def describe(self) -> str:
        if self.token_losses.shares_prompts:
            shared = "prompt run once for both answers"
        elif self.token_losses.vision is not None:  # a vision-language model never shares prompts
            shared = "prompt and any pictures it shows run with each answer, as two documents"
        else:
            shared = "prompt run with each answer"
        loss = f"{self.config.loss} DPO loss, beta {self.config.beta}"
        if self.config.loss == "simpo":
            loss += f", gamma {self.config.simpo_gamma}"
        if self.config.reference_free:
            loss += ", no reference model"
        return f"{self.token_losses.describe()} Pairs: {shared}; {loss}."

    def tokens(self, items: list) -> int:
        """Tokens of both sequences (prompt + chosen, prompt + rejected), as a plain implementation counts them."""
        return sum(2 * len(pair.prompt) + len(pair.chosen) + len(pair.rejected) for pair in items)

    def answer_logps(self, group: list) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, 2) summed log-probabilities of (chosen, rejected) and (n, 2) their token counts."""
        if self.token_losses.shares_prompts and all(shareable(pair) for pair in group):
            losses, lengths = self.token_losses.pair_losses(group)
            logps, counts = _answer_sums(losses, lengths), torch.tensor(lengths, dtype=torch.float32)
        else:
            logps, counts = self._document_logps(
                [pair.document(side) for pair in group for side in (pair.chosen, pair.rejected)]
            )
        return logps.view(-1, 2), counts.view(-1, 2).to(logps.device)

    def store_reference(self, group: list) -> None:
        logps, _ = self.answer_logps(group)
        for pair, values in zip(group, logps.tolist()):
            pair.reference = tuple(values)

    def loss(self, group: list, weight: float) -> tuple[torch.Tensor, torch.Tensor]:
        logps, counts = self.answer_logps(group)
        reference = (
            None
            if self.config.reference_free
            else torch.tensor([pair.reference for pair in group], dtype=logps.dtype, device=logps.device)
        )
        losses, chosen_rewards, rejected_rewards = pair_losses(logps, counts, reference, self.config)
        return losses.sum() / weight, dpo_tally(losses, chosen_rewards, rejected_rewards)


class KtoObjective(_PreferenceObjective):
    stage = "kto"

    def __init__(self, token_losses: TokenLosses, config: PreferenceConfig):
        super().__init__(token_losses, config)
        self.kl = torch.zeros(())

    def describe(self) -> str:
        losses = self.token_losses.describe()
        return f"{losses} KTO loss, beta {self.config.beta}, KL estimated per step on mismatched answers."

    def tokens(self, items: list) -> int:
        return sum(len(item.document.input_ids) for item in items)

    def store_reference(self, group: list) -> None:
        logps, _ = self._document_logps([item.document for item in group] + [item.kl_document for item in group])
        for item, answer, kl in zip(group, logps[: len(group)].tolist(), logps[len(group) :].tolist()):
            item.reference = (answer, kl)

    def prepare_step(self, items: list, no_grad_map: NoGradMap, step: int = 0, share: Share = everything) -> None:
        """The KL estimate of these items: the adapter's log-probabilities of the mismatched answers against the
        reference's, over the whole step (so it does not depend on how the step is split into forward passes)."""
        documents = [item.kl_document for item in items]
        sums = no_grad_map(
            lambda group: self.token_losses(group).double().sum(), self.token_losses.lane_plans(documents)
        )
        policy = -sum(s.cpu() for s in sums) / len(items)
        reference = sum(item.reference[1] for item in items) / len(items)
        self.kl = kl_estimate(policy.float(), torch.tensor(reference, dtype=torch.float32))

    def loss(self, group: list, weight: float) -> tuple[torch.Tensor, torch.Tensor]:
        logps, counts = self._document_logps([item.document for item in group])
        device = logps.device
        reference = torch.tensor([item.reference[0] for item in group], dtype=logps.dtype, device=device)
        desirable = torch.tensor([item.desirable for item in group], device=device)
        kl = self.kl.to(device)
        losses, rewards = kto_losses(logps, reference, desirable, kl, self.config)
        if self.config.ftx:
            losses = losses + self.config.ftx * torch.where(
                desirable, -logps / counts.to(device), torch.zeros_like(logps)
            )
        return losses.sum() / weight, kto_tally(losses, rewards, desirable, kl)


def _answer_sums(losses: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """Per-answer log-probabilities from per-token losses listed answer after answer."""
    index = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts)).to(losses.device)
    return -torch.zeros(len(counts), dtype=losses.dtype, device=losses.device).index_add_(0, index, losses)


Objective = TokenObjective | DpoObjective | KtoObjective | RewardObjective | GrpoObjective | PpoObjective


def build_objective(
    stage: str,
    token_losses: TokenLosses,
    preference: PreferenceConfig | None = None,
    model: torch.nn.Module | None = None,
    reinforce: Reinforcement | None = None,
) -> Objective:
    """The objective of a training stage (the stage registry). `model`: the model trained, for stages that add a
    value head to it (rm, ppo) or generate with it (ppo, grpo); `reinforce`: what ppo and grpo sample and score."""
    from studio.training.value_head import attach_value_head, head_of

    def head() -> ValueHead:
        assert model is not None  # the trainer passes its model
        return head_of(model) or attach_value_head(model)

    def reinforcement() -> Reinforcement:
        assert reinforce is not None, f"stage {stage} needs its rollout setup"
        return reinforce

    registry: dict[str, Callable[[], Objective]] = {
        "sft": lambda: TokenObjective(token_losses, "sft"),
        "pt": lambda: TokenObjective(token_losses, "pt"),
        "dpo": lambda: DpoObjective(token_losses, preference or PreferenceConfig()),
        "kto": lambda: KtoObjective(token_losses, preference or PreferenceConfig()),
        "rm": lambda: RewardObjective(token_losses, head()),
        "grpo": lambda: GrpoObjective(token_losses, reinforcement()),
        "ppo": lambda: PpoObjective(token_losses, reinforcement(), head()),
    }
    return registry[stage]()
