"""Stage ppo: RLHF's PPO against a reward model (a finished rm run), as LLaMA-Factory's ppo stage trains it.

The policy is the model with its LoRA adapter; the reference the same weights with the adapter off; the value
function a value head on the policy's hidden states (value_head.py); the reward model a frozen model of its own
(reward_scorer.py). A rollout answers the prompts of `ppo_buffer_size` optimizer steps at once; each answer's
per-token reward is minus kl_coef times its log-ratio to the reference, plus the reward model's score on its last
token. GAE turns rewards and values into advantages (whitened over the buffer) and returns; `ppo_epochs` passes
over the buffer then make optimizer steps of clipped policy and value losses. The KL coefficient adapts towards
`ppo_target` (the adaptive controller of Ziegler et al.).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from studio.data.tokenize_kinds import EncodedPrompt
from studio.training.reinforce import (
    NoGradMap,
    Reinforcement,
    RewardTally,
    Rollout,
    SamplingObjective,
    Share,
    everything,
    own_share,
    split_tokens,
)
from studio.training.token_losses import TokenLosses
from studio.training.value_head import ValueHead

if TYPE_CHECKING:
    from studio.training.batches import StepSchedule


def _alone(values: torch.Tensor) -> torch.Tensor:
    """One process: its sums are the run's."""
    return values


class PpoObjective(SamplingObjective):
    stage = "ppo"

    def __init__(self, token_losses: TokenLosses, reinforce: Reinforcement, head: ValueHead):
        super().__init__(token_losses, reinforce, RewardTally([]))
        self.config, self.head = reinforce.ppo, head
        self.kl_coef = self.config.init_kl_coef
        self.score_moments = _RunningMoments()
        self.block: int | None = None
        self.train: list = []
        self.schedule: StepSchedule | None = None
        self.total: Callable[[torch.Tensor], torch.Tensor] = _alone

    @property
    def repeat(self) -> int:
        return self.config.ppo_epochs

    @property
    def buffer(self) -> int:
        return self.config.ppo_buffer_size

    def bind(self, train: list, schedule: StepSchedule, total: Callable[[torch.Tensor], torch.Tensor] = _alone) -> None:
        """The run's examples and schedule: a rollout answers every prompt of its buffer at once. `total`: a tensor
        summed over the processes, so that the KL controller and the score statistics are the run's, not each
        process's (as TRL gathers them); advantages are whitened over each process's own share."""
        self.train, self.schedule, self.total = train, schedule, total

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps besides the weights: the adapted KL coefficient and the score statistics."""
        moments = self.score_moments
        return {"kl_coef": self.kl_coef, "score_moments": [moments.mean, moments.var, moments.count]}

    def load_state(self, state: dict[str, Any]) -> None:
        if "kl_coef" in state:
            self.kl_coef = float(state["kl_coef"])
        if "score_moments" in state:
            mean, var, count = (float(value) for value in state["score_moments"])
            self.score_moments.mean, self.score_moments.var, self.score_moments.count = mean, var, count

    def describe(self) -> str:
        config = self.config
        return (
            f"{self.token_losses.describe()} PPO: {config.ppo_epochs} epochs over buffers of "
            f"{config.ppo_buffer_size} step(s), KL {config.init_kl_coef:g} adapting to {config.ppo_target:g}."
        )

    # -- rollouts --------------------------------------------------------------------------------

    def prepare_step(
        self, items: list[EncodedPrompt], no_grad_map: NoGradMap, step: int = 0, share: Share = everything
    ) -> None:
        """At a buffer's first step: answers to this process's share of every prompt of the buffer."""
        assert self.schedule is not None, "bind() the schedule first"
        block = self.schedule.block_of(step)
        if block == self.block:
            return
        buffer: dict[int, EncodedPrompt] = {}
        for source in self.schedule.block_steps(block):
            step_items = [self.train[i] for batch in self.schedule.source_batches(source) for i in batch]
            buffer.update((id(item), item) for item in own_share(step_items, share))  # what the steps will train
        mine = list(buffer.values())
        self.block, self.latest = block, []
        # a process left without a share of a small buffer still takes part in the run's statistics below
        rollouts = self.sampler.sample(mine, 1, block)
        self.score(rollouts, training=True)
        self._measure(rollouts, no_grad_map)
        self._advantages(rollouts)
        for item, rollout in zip(mine, rollouts):
            item.rollouts = [rollout]
        self.block, self.latest = block, rollouts

    def score(self, rollouts: list[Rollout], training: bool) -> None:
        scores = torch.tensor(
            self.reinforce.reward_model.score_ids([r.input_ids for r in rollouts]), dtype=torch.float64
        )
        if self.config.ppo_score_norm:
            if training:  # every process, with or without answers of its own
                sums = torch.stack(
                    [torch.tensor(float(len(scores)), dtype=torch.float64), scores.sum(), scores.pow(2).sum()]
                )
                self.score_moments.update(*self._summed(sums))
            scores = self.score_moments.normalise(scores)
        for rollout, value in zip(rollouts, scores.tolist()):
            rollout.reward = value

    def _measure(self, rollouts: list[Rollout], no_grad_map: NoGradMap) -> None:
        """Log-probabilities and values at sampling (adapter on) and the reference's (adapter off)."""
        plans = self.token_losses.lane_plans(rollouts)
        groups = [group for lane in plans for group in lane]
        self.token_losses.model.eval()
        measured = no_grad_map(lambda group: self._policy(group), plans)
        self.token_losses.model.train()
        for group, (logps, values) in zip(groups, measured):
            for rollout, old, value in zip(group, split_tokens(logps, group), split_tokens(values, group)):
                rollout.old, rollout.values = old, value
        for rollout, reference in zip(rollouts, self.sampler.log_probabilities(rollouts, no_grad_map, reference=True)):
            rollout.reference = reference

    def _policy(self, group: list[Rollout]) -> tuple[torch.Tensor, torch.Tensor]:
        losses, hidden = self.token_losses.token_hidden(group)
        return -losses.float(), self.head(hidden).float()

    def _summed(self, values: torch.Tensor) -> list[float]:
        return self.total(values.to(self.token_losses.device)).tolist()

    def _advantages(self, rollouts: list[Rollout]) -> None:
        """Per-token rewards (KL penalty, score at the end), GAE, whitened advantages; then the KL controller."""
        self._whitened_advantages(rollouts)
        self._adapt_kl(rollouts)

    def _whitened_advantages(self, rollouts: list[Rollout]) -> None:
        if not rollouts:
            return
        gamma, lam = self.config.gamma, self.config.lam
        rewards = []
        for rollout in rollouts:
            assert rollout.old is not None and rollout.reference is not None
            per_token = -self.kl_coef * (rollout.old - rollout.reference)
            per_token[-1] += rollout.reward
            rewards.append(per_token)
        if self.config.ppo_whiten_rewards:
            rewards = _whiten_each(rewards, shift_mean=False)
        advantages = []
        for rollout, reward in zip(rollouts, rewards):
            assert rollout.values is not None
            values, gae = rollout.values, torch.zeros(())
            found = torch.zeros_like(values)
            for t in reversed(range(len(values))):
                following = values[t + 1] if t + 1 < len(values) else torch.zeros(())
                gae = reward[t] + gamma * following - values[t] + gamma * lam * gae
                found[t] = gae
            rollout.returns = found + values
            advantages.append(found)
        for rollout, whitened in zip(rollouts, _whiten_each(advantages)):
            rollout.advantages = whitened

    def _adapt_kl(self, rollouts: list[Rollout]) -> None:
        """The adaptive controller over every process's answers (each process calls this, answers or not)."""
        kl = sum(float((r.old - r.reference).sum()) for r in rollouts if r.old is not None and r.reference is not None)
        count, total = self._summed(torch.tensor([float(len(rollouts)), kl], dtype=torch.float64))
        if count == 0:
            return
        error = min(max(total / count / self.config.ppo_target - 1, -0.2), 0.2)
        self.kl_coef *= 1 + error * count / self.config.kl_horizon

    # -- the loss --------------------------------------------------------------------------------

    def step_weight(self, items: list, floor: int = 1) -> int:
        return max(floor, sum(len(r.completion) for r in self.rollouts(items)))

    def cost(self, item: EncodedPrompt) -> int:
        return len(item.prompt)

    def loss(self, group: list[Rollout], weight: float) -> tuple[torch.Tensor, torch.Tensor]:
        losses, hidden = self.token_losses.token_hidden(group)
        logps, values = -losses, self.head(hidden)
        device = logps.device

        def joined(name: str) -> torch.Tensor:
            return torch.cat([getattr(r, name) for r in group]).to(device, logps.dtype)

        old, advantages, returns, old_values = joined("old"), joined("advantages"), joined("returns"), joined("values")
        ratio = torch.exp(logps - old)
        low, high = 1 - self.config.cliprange, 1 + self.config.cliprange
        policy = torch.max(-advantages * ratio, -advantages * ratio.clamp(low, high))
        clipped_values = old_values + (values - old_values).clamp(
            -self.config.cliprange_value, self.config.cliprange_value
        )
        value = 0.5 * torch.max((values - returns) ** 2, (clipped_values - returns) ** 2)
        total = policy.sum() + self.config.vf_coef * value.sum()
        clipped = ((ratio < low) | (ratio > high)).double().sum()
        value_loss = torch.stack([v.mean() for v in split_tokens(value.detach(), group)]).double().sum()
        kl = (old - joined("reference")).detach().double().sum()
        return total / weight, self.tally.of(group, device, kl=kl, clipped=clipped, value_loss=value_loss)


class _RunningMoments:
    """Mean and spread of every score seen so far (Chan et al.'s parallel update), for ppo_score_norm."""

    def __init__(self) -> None:
        self.mean, self.var, self.count = 0.0, 1.0, 1e-24

    def update(self, n: float, summed: float, squares: float) -> None:
        """Add a batch given by its count, sum and sum of squares."""
        if n == 0:
            return
        batch_mean = summed / n
        batch_var = max(squares / n - batch_mean**2, 0.0)
        delta, total = batch_mean - self.mean, self.count + n
        self.var = (self.var * self.count + batch_var * n + delta**2 * self.count * n / total) / total
        self.mean, self.count = self.mean + delta * n / total, total

    def normalise(self, values: torch.Tensor) -> torch.Tensor:
        return (values - self.mean) / max(self.var**0.5, 1e-8)


def _whiten_each(values: list[torch.Tensor], shift_mean: bool = True) -> list[torch.Tensor]:
    """Whitened over every token of the buffer, given back per rollout."""
    joined = torch.cat(values)
    if joined.numel() < 2:
        return values
    whitened = (joined - joined.mean()) / (joined.std(unbiased=False) + 1e-8)
    if not shift_mean:
        whitened = whitened + joined.mean()
    return list(torch.split(whitened, [len(v) for v in values]))
