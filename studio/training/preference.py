"""The math of the preference stages: DPO (sigmoid, hinge, IPO) and KTO losses, rewards and their metrics.

Inputs are per-example log-probabilities of answers (sums over the answer's tokens) under the
adapter being trained ("policy") and under the frozen reference. The implicit reward of an answer
is beta * (policy - reference) log-probability: 0 for every answer while the adapter still
equals the reference, where the sigmoid DPO loss is ln 2.

Metrics travel as a `Tally`, a small vector of sums, so micro-batches, CPU lanes and logging
windows add them up in any grouping and the means come out the same.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from studio.config import PreferenceConfig
from studio.runs.events import Preference

# Positions in a Tally: sums over examples (pairs for DPO, examples for KTO).
LOSS, COUNT, CHOSEN_COUNT, REJECTED_COUNT, CHOSEN_REWARDS, REJECTED_REWARDS, CORRECT, KL = range(8)
TALLY_SIZE = 8


def dpo_losses(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    config: PreferenceConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(losses, chosen rewards, rejected rewards) per pair; the rewards carry no gradient.

    sigmoid: -log sigmoid(beta * h), with label smoothing e: -(1 - e) log sigmoid(beta h) - e log sigmoid(-beta h)
    hinge:   max(0, 1 - beta * h)
    ipo:     (h - 1 / (2 beta))^2
    where h = (policy_chosen - reference_chosen) - (policy_rejected - reference_rejected).
    """
    beta = config.beta
    logits = (policy_chosen - reference_chosen) - (policy_rejected - reference_rejected)
    if config.loss == "sigmoid":
        smoothing = config.label_smoothing
        losses = -F.logsigmoid(beta * logits) * (1 - smoothing) - F.logsigmoid(-beta * logits) * smoothing
    elif config.loss == "hinge":
        losses = torch.relu(1 - beta * logits)
    else:
        losses = (logits - 1 / (2 * beta)) ** 2
    chosen_rewards = beta * (policy_chosen - reference_chosen).detach()
    rejected_rewards = beta * (policy_rejected - reference_rejected).detach()
    return losses, chosen_rewards, rejected_rewards


def kto_losses(
    policy: torch.Tensor, reference: torch.Tensor, desirable: torch.Tensor, kl: torch.Tensor, config: PreferenceConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """(weighted losses, rewards) per example. `kl` is the batch's estimate of how far the adapter has moved
    (mean policy - reference log-probability of mismatched answers, clamped at 0, no gradient):

    desirable:   w_d * (1 - sigmoid(beta * (r - kl)))
    undesirable: w_u * (1 - sigmoid(beta * (kl - r)))      with r = policy - reference
    """
    beta = config.beta
    ratio = policy - reference
    desirable_losses = config.desirable_weight * (1 - torch.sigmoid(beta * (ratio - kl)))
    undesirable_losses = config.undesirable_weight * (1 - torch.sigmoid(beta * (kl - ratio)))
    return torch.where(desirable, desirable_losses, undesirable_losses), beta * ratio.detach()


def kl_estimate(policy_kl: torch.Tensor, reference_kl: torch.Tensor) -> torch.Tensor:
    return (policy_kl - reference_kl).mean().clamp(min=0).detach()


def dpo_tally(losses: torch.Tensor, chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> torch.Tensor:
    tally = torch.zeros(TALLY_SIZE, dtype=torch.float64, device=losses.device)
    count = float(len(losses))
    tally[LOSS] = losses.detach().double().sum()
    tally[COUNT] = tally[CHOSEN_COUNT] = tally[REJECTED_COUNT] = count
    tally[CHOSEN_REWARDS] = chosen_rewards.double().sum()
    tally[REJECTED_REWARDS] = rejected_rewards.double().sum()
    tally[CORRECT] = (chosen_rewards > rejected_rewards).double().sum()
    return tally


def kto_tally(losses: torch.Tensor, rewards: torch.Tensor, desirable: torch.Tensor, kl: torch.Tensor) -> torch.Tensor:
    """KTO has no pairs: its accuracy is the share of answers whose reward has the right sign (positive for
    desirable, negative for undesirable ones), its margin the mean desirable minus the mean undesirable reward."""
    tally = torch.zeros(TALLY_SIZE, dtype=torch.float64, device=losses.device)
    rewards = rewards.double()
    tally[LOSS] = losses.detach().double().sum()
    tally[COUNT] = float(len(losses))
    tally[CHOSEN_COUNT] = desirable.double().sum()
    tally[REJECTED_COUNT] = (~desirable).double().sum()
    tally[CHOSEN_REWARDS] = rewards[desirable].sum()
    tally[REJECTED_REWARDS] = rewards[~desirable].sum()
    tally[CORRECT] = torch.where(desirable, rewards > 0, rewards < 0).double().sum()
    tally[KL] = kl.double() * len(losses)
    return tally


def tally_metrics(tally: torch.Tensor, with_kl: bool = False) -> dict[str, float]:
    """Means of a Tally: loss, rewards_chosen, rewards_rejected, reward_margin, reward_accuracy (and kl for KTO)."""
    values = tally.tolist()
    count = max(values[COUNT], 1.0)
    chosen = values[CHOSEN_REWARDS] / values[CHOSEN_COUNT] if values[CHOSEN_COUNT] else 0.0
    rejected = values[REJECTED_REWARDS] / values[REJECTED_COUNT] if values[REJECTED_COUNT] else 0.0
    metrics = {
        "loss": values[LOSS] / count,
        "rewards_chosen": chosen,
        "rewards_rejected": rejected,
        "reward_margin": chosen - rejected,
        "reward_accuracy": values[CORRECT] / count,
    }
    if with_kl:
        metrics["kl"] = values[KL] / count
    return metrics


def preference_event(step: int, split: Literal["train", "eval"], metrics: dict[str, float]) -> Preference:
    """The event of a tally's means (tally_metrics), as the charts read it."""
    return Preference(
        step=step,
        split=split,
        rewards_chosen=metrics["rewards_chosen"],
        rewards_rejected=metrics["rewards_rejected"],
        reward_margin=metrics["reward_margin"],
        reward_accuracy=metrics["reward_accuracy"],
        kl=metrics.get("kl"),
    )
