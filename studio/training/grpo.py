"""Stage grpo: Group Relative Policy Optimization with rule-based (verifiable) rewards.

Each step answers every prompt `num_generations` times with the model as it trains, scores each answer with
the reward functions (rewards.py), and gives each answer its advantage within its group: its reward minus the
group's mean, divided by the group's spread (scale_rewards). One optimisation pass per sample (as TRL's default),
so the policy ratio is 1 in value and the clipped surrogate's gradient is the advantage times the gradient of
the log-probability; the KL term to the reference (adapter off) is the k3 estimator per token, weighted by beta.
Token losses are averaged per answer then over answers (loss_type sequence, the paper's) or over every answer
token of the step (token, DAPO's). A group whose answers all score the same has no advantage and adds nothing.
"""

from __future__ import annotations

import torch

from studio.data.tokenize_kinds import EncodedPrompt
from studio.training.reinforce import (
    NoGradMap,
    Reinforcement,
    RewardTally,
    Rollout,
    SamplingObjective,
    Share,
    answer_losses,
    everything,
    own_share,
    split_tokens,
)
from studio.training.rewards import score as rule_score
from studio.training.token_losses import TokenLosses

FLAT = 1e-6  # a group spread below this is no spread


class GrpoObjective(SamplingObjective):
    stage = "grpo"

    def __init__(self, token_losses: TokenLosses, reinforce: Reinforcement):
        self.config = reinforce.grpo
        tally = RewardTally([reward.name for reward in reinforce.rewards], measures_kl=self.config.beta > 0)
        super().__init__(token_losses, reinforce, tally)

    def describe(self) -> str:
        functions = " + ".join(f"{r.weight:g}×{r.name}" for r in self.reinforce.rewards)
        return (
            f"{self.token_losses.describe()} GRPO: {self.config.num_generations} answers per prompt, reward "
            f"{functions}, beta {self.config.beta:g}, {self.config.loss_type} loss."
        )

    # -- sampling --------------------------------------------------------------------------------

    def prepare_step(
        self, items: list[EncodedPrompt], no_grad_map: NoGradMap, step: int = 0, share: Share = everything
    ) -> None:
        """Answers to this process's share of the step's prompts, scored, with their advantages."""
        items = own_share(items, share)
        rollouts = self.sampler.sample(items, self.config.num_generations, step)
        self.score(rollouts, training=True)
        for index, item in enumerate(items):
            group = rollouts[index * self.config.num_generations : (index + 1) * self.config.num_generations]
            self._advantages(group)
            item.rollouts = group
        if self.config.beta > 0 and rollouts:
            for rollout, logps in zip(rollouts, self.sampler.log_probabilities(rollouts, no_grad_map, reference=True)):
                rollout.reference = logps
        self.latest = items[-1].rollouts if items else []

    def score(self, rollouts: list[Rollout], training: bool) -> None:
        for rollout in rollouts:
            rollout.reward, rollout.scores = rule_score(
                self.reinforce.rewards, rollout.prompt.question, rollout.text, rollout.prompt.reference
            )

    def _advantages(self, group: list[Rollout]) -> None:
        rewards = torch.tensor([r.reward for r in group], dtype=torch.float64)
        spread = rewards.std(unbiased=False).item()
        flat = spread < FLAT
        for rollout, reward in zip(group, rewards.tolist()):
            centred = reward - rewards.mean().item()
            scaled = centred / (spread + 1e-4) if self.config.scale_rewards else centred
            rollout.advantage, rollout.flat_group = (0.0 if flat else scaled), flat

    # -- the loss --------------------------------------------------------------------------------

    def step_weight(self, items: list, floor: int = 1) -> int:
        rollouts = self.rollouts(items)
        if self.config.loss_type == "token":
            return max(floor, sum(len(r.completion) for r in rollouts))
        return max(floor, len(rollouts))

    def cost(self, item: EncodedPrompt) -> int:
        """For dealing prompts to processes before they are answered: the prompt, once per answer."""
        return len(item.prompt) * self.config.num_generations

    def loss(self, group: list[Rollout], weight: float) -> tuple[torch.Tensor, torch.Tensor]:
        logps = -answer_losses(self.token_losses, group)
        device = logps.device
        advantages = torch.cat(
            [torch.full((len(r.completion),), r.advantage, device=device, dtype=logps.dtype) for r in group]
        )
        ratio = torch.exp(logps - logps.detach())  # 1: one pass per sample; the gradient is the policy gradient
        epsilon = self.config.epsilon
        clipped_ratio = ratio.clamp(1 - epsilon, 1 + epsilon)
        per_token = -torch.min(ratio * advantages, clipped_ratio * advantages)
        kl = torch.zeros_like(logps)
        if self.config.beta > 0:
            reference = torch.cat([r.reference for r in group if r.reference is not None]).to(device, logps.dtype)
            gap = reference - logps
            kl = torch.exp(gap) - gap - 1
            per_token = per_token + self.config.beta * kl
        if self.config.loss_type == "token":
            total = per_token.sum()
        else:
            total = torch.stack([values.mean() for values in split_tokens(per_token, group)]).sum()
        clipped = ((ratio - clipped_ratio).abs() > 0).double().sum()
        return total / weight, self.tally.of(group, device, kl=kl.detach().double().sum(), clipped=clipped)
