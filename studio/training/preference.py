"""The math of the preference stages: DPO (sigmoid, hinge, IPO, ORPO, SimPO) and KTO losses, rewards and metrics.

Inputs are per-example log-probabilities of answers (sums over the answer's tokens) under the
adapter being trained ("policy") and under the frozen reference. The implicit reward of an answer
is beta * (policy - reference) log-probability: 0 for every answer while the adapter still
equals the reference, where the sigmoid DPO loss is ln 2. ORPO and SimPO have no reference: their
inputs are log-probabilities averaged per answer token and an answer's reward is beta times that
average (as LLaMA-Factory and TRL report them).

Metrics travel as a `Tally`, a small vector of sums, so micro-batches, CPU lanes and logging
windows add them up in any grouping and the means come out the same.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from studio.config import PreferenceConfig
from studio.runs.events import Preference

# Positions in a Tally: sums over examples (pairs for DPO, examples for KTO).
LOSS, COUNT, CHOSEN_COUNT, REJECTED_COUNT, CHOSEN_REWARDS, REJECTED_REWARDS, CORRECT, KL = range(8)
TALLY_SIZE = 8


def pair_losses(
    logps: torch.Tensor, counts: torch.Tensor, reference: torch.Tensor | None, config: PreferenceConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The dpo stage's (losses, chosen rewards, rejected rewards) per pair, from (n, 2) summed log-probabilities of
    (chosen, rejected) under the policy, their (n, 2) token counts and the reference's sums (None for orpo and
    simpo), with the SFT term (ftx) added."""
    # IPO, ORPO and SimPO compare per-token averages (as LLaMA-Factory does), the other losses whole-answer sums
    averaged = config.loss in ("ipo", "orpo", "simpo")
    policy = logps / counts if averaged else logps
    if config.reference_free:
        losses, chosen_rewards, rejected_rewards = reference_free_losses(policy[:, 0], policy[:, 1], config)
    else:
        assert reference is not None, f"the {config.loss} loss needs the reference's log-probabilities"
        reference = reference / counts if averaged else reference
        losses, chosen_rewards, rejected_rewards = dpo_losses(
            policy[:, 0], policy[:, 1], reference[:, 0], reference[:, 1], config
        )
    if config.ftx:  # an SFT term: the chosen answer's per-token negative log-likelihood (on top of ORPO's own)
        losses = losses + config.ftx * (-logps[:, 0] / counts[:, 0])
    return losses, chosen_rewards, rejected_rewards


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


def reference_free_losses(
    policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, config: PreferenceConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(losses, chosen rewards, rejected rewards) per pair, from log-probabilities averaged per answer token:

    orpo:  -chosen - beta * log sigmoid(log odds(chosen) - log odds(rejected)),  log odds(p) = p - log(1 - e^p)
    simpo: -log sigmoid(beta * (chosen - rejected) - simpo_gamma)
    rewards: beta * chosen, beta * rejected (no gradient).
    """
    beta = config.beta
    if config.loss == "orpo":
        log_odds = (policy_chosen - policy_rejected) - (_log1mexp(policy_chosen) - _log1mexp(policy_rejected))
        losses = -policy_chosen - beta * F.logsigmoid(log_odds)  # the NLL term is part of ORPO itself
    else:
        losses = -F.logsigmoid(beta * (policy_chosen - policy_rejected) - config.simpo_gamma)
    return losses, beta * policy_chosen.detach(), beta * policy_rejected.detach()


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - e^x) for x <= 0, accurate at both ends (Maechler's split at -ln 2). Near 0, where 1 - e^x would
    cancel to nothing in float32, expm1 keeps the digits; x is held just below 0 so an answer the model is certain
    of gives a large finite log odds rather than inf, and no NaN gradient."""
    near = x > -math.log(2)
    close = torch.log(-torch.expm1(x.clamp(max=-1e-30)))
    far = torch.log1p(-torch.exp(x.clamp(max=-math.log(2))))
    return torch.where(near, close, far)


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
