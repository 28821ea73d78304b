"""The math of rm, grpo and ppo on a tiny model in fp32: where each must start, what must give no gradient, and
that sampling repeats with its seed."""

from __future__ import annotations

import json
import math

import pytest
import torch

from studio.config import GenerationConfig, GrpoConfig, PpoConfig, RewardsConfig, TrainingConfig
from studio.data.examples import PairwiseExample
from studio.data.tokenize_kinds import encode_pair, encode_prompt
from studio.training.batches import StepSchedule
from studio.training.grpo import GrpoObjective
from studio.training.objectives import build_objective
from studio.training.ppo import PpoObjective
from studio.training.reinforce import Reinforcement, Sampler, answer_losses, plan_answers
from studio.training.reward_model import RewardObjective
from studio.training.reward_scorer import RewardScorer
from studio.training.rewards import build_rewards
from studio.training.token_losses import TokenLosses
from studio.training.value_head import ValueHead


def _model(tiny_model_dir, zero_adapter: bool = True):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=zero_adapter)
    model = get_peft_model(base, config).train()
    if not zero_adapter:  # peft's random init: B not zero either, so the adapter changes the model
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(0, 0.2)
    return model


def _token_losses(model, lanes: int = 1) -> TokenLosses:
    return TokenLosses(model, device="cpu", packing=True, token_budget=4096, batch_size=4, lanes=lanes)


def _serial(work, plans):
    """The strategy's no_grad_map on one process and one lane."""
    with torch.no_grad():
        return [work(group) for lane in plans for group in lane]


def _prompts(tokenizer, count: int = 3):
    questions = [("2 + 3 = ?", "5"), ("7 - 4 = ?", "3"), ("3 × 3 = ?", "9"), ("10 + 1 = ?", "11")][:count]
    return [
        encode_prompt(tokenizer, [{"role": "user", "content": q}, {"role": "assistant", "content": a}], 128)
        for q, a in questions
    ]


def _gradients(model) -> dict[str, torch.Tensor]:
    return {n: p.grad for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}


def test_a_zero_value_head_starts_the_reward_model_at_ln_2(tiny_model_dir, tiny_tokenizer):
    model = _model(tiny_model_dir, zero_adapter=False)
    objective = build_objective("rm", _token_losses(model), model=model)
    assert isinstance(objective, RewardObjective)
    pairs = [
        encode_pair(
            tiny_tokenizer,
            PairwiseExample(
                [{"role": "user", "content": f"问题 {i}"}],
                {"role": "assistant", "content": "好的回答" * (i + 1)},
                {"role": "assistant", "content": "不好"},
            ),
            256,
        )
        for i in range(4)
    ]
    loss, tally = objective.loss(pairs, len(pairs))
    assert loss.item() == pytest.approx(math.log(2), abs=1e-6)
    loss.backward()
    # the head learns first (its gradient is the hidden states' difference); LoRA waits for the head
    assert objective.head.summary.weight.grad.abs().sum() > 0
    assert objective.eval_metrics(tally, pairs)["eval_loss"] == pytest.approx(math.log(2), abs=1e-6)


def _grpo(model, tokenizer, rewards: RewardsConfig, beta: float = 0.0, lanes: int = 1) -> GrpoObjective:
    reinforce = Reinforcement(
        tokenizer,
        GenerationConfig(max_new_tokens=6, temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0),
        seed=7,
        grpo=GrpoConfig(num_generations=3, beta=beta),
        rewards=build_rewards(rewards),
    )
    objective = build_objective("grpo", _token_losses(model, lanes), model=model, reinforce=reinforce)
    assert isinstance(objective, GrpoObjective)
    return objective


def test_grpo_with_all_rewards_in_a_group_equal_gives_zero_policy_gradient(tiny_model_dir, tiny_tokenizer):
    model = _model(tiny_model_dir, zero_adapter=False)
    always = RewardsConfig(accuracy=0.0, length=1.0, length_min=0, length_max=10**6)  # every answer scores 1
    objective = _grpo(model, tiny_tokenizer, always)
    prompts = _prompts(tiny_tokenizer)
    objective.prepare_step(prompts, _serial, step=0)
    rollouts = objective.rollouts(prompts)
    assert len(rollouts) == 9 and all(r.flat_group and r.advantage == 0.0 for r in rollouts)
    loss, tally = objective.loss(rollouts, objective.step_weight(prompts))
    loss.backward()
    assert loss.item() == 0.0
    assert all(torch.count_nonzero(grad) == 0 for grad in _gradients(model).values())
    assert objective.tally.metrics(tally)["flat_groups"] == 1.0


def test_grpo_advantages_are_normalised_within_each_group(tiny_model_dir, tiny_tokenizer):
    model = _model(tiny_model_dir)
    objective = _grpo(model, tiny_tokenizer, RewardsConfig(accuracy=0.0, repetition=1.0))
    prompts = _prompts(tiny_tokenizer)
    objective.prepare_step(prompts, _serial, step=0)
    for prompt in prompts:
        rewards = torch.tensor([r.reward for r in prompt.rollouts], dtype=torch.float64)
        advantages = torch.tensor([r.advantage for r in prompt.rollouts], dtype=torch.float64)
        assert advantages.sum().item() == pytest.approx(0.0, abs=1e-9)
        if rewards.std() > 0:
            expected = (rewards - rewards.mean()) / (rewards.std(unbiased=False) + 1e-4)
            assert torch.allclose(advantages, expected)


def test_grpo_kl_is_zero_while_the_adapter_is_at_its_initial_zero(tiny_model_dir, tiny_tokenizer):
    model = _model(tiny_model_dir, zero_adapter=True)
    objective = _grpo(model, tiny_tokenizer, RewardsConfig(accuracy=0.0, repetition=1.0), beta=0.5)
    prompts = _prompts(tiny_tokenizer)
    objective.prepare_step(prompts, _serial, step=0)
    rollouts = objective.rollouts(prompts)
    assert all(r.reference is not None for r in rollouts)
    _, tally = objective.loss(rollouts, objective.step_weight(prompts))
    assert objective.tally.metrics(tally)["kl"] == pytest.approx(0.0, abs=1e-7)


def test_grpo_sampling_repeats_with_the_seed_and_step(tiny_model_dir, tiny_tokenizer):
    model = _model(tiny_model_dir)
    sampler = Sampler(_token_losses(model, lanes=2), _grpo(model, tiny_tokenizer, RewardsConfig()).reinforce)
    prompts = _prompts(tiny_tokenizer)
    first = [r.completion for r in sampler.sample(prompts, 3, 5)]
    again = [r.completion for r in sampler.sample(prompts, 3, 5)]
    other_step = [r.completion for r in sampler.sample(prompts, 3, 6)]
    assert first == again and first != other_step
    assert len({tuple(c) for c in first}) > 1  # sampled, not greedy: a group's answers differ


def test_a_groups_answers_sharing_one_run_of_their_prompt_have_the_losses_each_has_alone(
    tiny_model_dir, tiny_tokenizer
):
    model = _model(tiny_model_dir, zero_adapter=False).eval()
    objective = _grpo(model, tiny_tokenizer, RewardsConfig(accuracy=0.0, repetition=1.0))
    prompts = _prompts(tiny_tokenizer)
    rollouts = objective.sampler.sample(prompts, 3, 0)
    token_losses = objective.token_losses
    assert token_losses.shares_prompts
    small = TokenLosses(model, device="cpu", packing=True, token_budget=16, batch_size=4, lanes=2)
    groups = [group for lane in plan_answers(small, rollouts) for group in lane]
    assert len(groups) > 1
    for prompt in prompts:  # a prompt's answers are never cut apart, however small the budget
        assert sum(any(r.prompt is prompt for r in group) for group in groups) == 1
    with torch.no_grad():
        shared = answer_losses(token_losses, rollouts)
        alone = torch.cat([token_losses([rollout]) for rollout in rollouts])
    assert shared.shape == alone.shape == (sum(len(r.completion) for r in rollouts),)
    assert torch.allclose(shared, alone, atol=1e-5)


def _ppo(tiny_model_dir, tokenizer, ppo: PpoConfig, max_new_tokens: int = 5, random_reward: bool = True):
    """PPO on the tiny model against a tiny reward model whose value head (and, with `random_reward`, its adapter)
    scores at random."""
    model = _model(tiny_model_dir, zero_adapter=False)
    reward_model = _model(tiny_model_dir, zero_adapter=not random_reward)
    head = ValueHead(model.config.hidden_size)
    torch.nn.init.normal_(head.summary.weight, std=0.5)
    reinforce = Reinforcement(
        tokenizer,
        GenerationConfig(max_new_tokens=max_new_tokens, temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0),
        seed=3,
        ppo=ppo,
        reward_model=RewardScorer(reward_model, head, "cpu"),
    )
    objective = build_objective("ppo", _token_losses(model), model=model, reinforce=reinforce)
    assert isinstance(objective, PpoObjective)
    return objective


def test_ppo_first_epoch_ratio_is_one_and_the_clipped_loss_equals_the_unclipped_one(tiny_model_dir, tiny_tokenizer):
    objective = _ppo(tiny_model_dir, tiny_tokenizer, PpoConfig(ppo_epochs=2, cliprange=0.2, cliprange_value=0.2), 6)
    prompts = _prompts(tiny_tokenizer, 4)
    schedule = StepSchedule.of(4, TrainingConfig(batch_size=4, gradient_accumulation_steps=1, max_steps=2), 2, 1)
    objective.bind(prompts, schedule)
    objective.prepare_step(prompts, _serial, step=0)
    rollouts = objective.rollouts(prompts)
    weight = objective.step_weight(prompts)
    loss, tally = objective.loss(rollouts, weight)

    losses, hidden = objective.token_losses.token_hidden(rollouts)
    old = torch.cat([r.old for r in rollouts])
    assert torch.allclose(torch.exp(-losses - old), torch.ones_like(old), atol=1e-5)  # ratio 1 at the first pass
    values = objective.head(hidden)
    advantages = torch.cat([r.advantages for r in rollouts])
    returns = torch.cat([r.returns for r in rollouts])
    unclipped = (-advantages).sum() + objective.config.vf_coef * (0.5 * (values - returns) ** 2).sum()
    assert loss.item() == pytest.approx(unclipped.item() / weight, rel=1e-4, abs=1e-5)
    assert objective.tally.metrics(tally)["clip_fraction"] == 0.0
    assert advantages.mean().item() == pytest.approx(0.0, abs=1e-5)  # whitened over the buffer


def test_ppo_rewards_carry_the_kl_penalty_per_token_and_the_score_at_the_end(tiny_model_dir, tiny_tokenizer):
    objective = _ppo(tiny_model_dir, tiny_tokenizer, PpoConfig(ppo_epochs=1, gamma=1.0, lam=1.0), random_reward=False)
    prompts = _prompts(tiny_tokenizer, 2)
    objective.bind(prompts, StepSchedule.of(2, TrainingConfig(batch_size=2, gradient_accumulation_steps=1), 1, 1))
    coefficient = objective.kl_coef
    objective.prepare_step(prompts, _serial, step=0)
    for rollout in objective.rollouts(prompts):
        # gamma = lambda = 1: the return at the first token is the sum of every reward after it
        expected = (-coefficient * (rollout.old - rollout.reference)).sum() + rollout.reward
        assert rollout.returns[0].item() == pytest.approx(expected.item(), rel=1e-4, abs=1e-5)


def test_ppo_adapts_its_kl_coefficient_and_score_statistics_over_every_process_and_keeps_them(
    tiny_model_dir, tiny_tokenizer
):
    def objective_on(prompts, total=None):
        objective = _ppo(tiny_model_dir, tiny_tokenizer, PpoConfig(ppo_score_norm=True))
        schedule = StepSchedule.of(
            len(prompts), TrainingConfig(batch_size=len(prompts), gradient_accumulation_steps=1), 1, 1
        )
        objective.bind(prompts, schedule, *([total] if total else []))
        objective.prepare_step(prompts, _serial, step=0)
        return objective

    alone = objective_on(_prompts(tiny_tokenizer, 2))
    twice = objective_on(_prompts(tiny_tokenizer, 2), total=lambda sums: 2 * sums)  # two processes alike
    assert alone.kl_coef != PpoConfig().init_kl_coef
    assert twice.score_moments.count == pytest.approx(2 * alone.score_moments.count)
    assert twice.score_moments.mean == pytest.approx(alone.score_moments.mean)
    # the controller's step grows with the run's answer count, its direction is the run's mean KL
    step = alone.kl_coef / PpoConfig().init_kl_coef - 1
    assert twice.kl_coef / PpoConfig().init_kl_coef - 1 == pytest.approx(2 * step, rel=1e-6)

    resumed = objective_on(_prompts(tiny_tokenizer, 2))
    resumed.load_state(json.loads(json.dumps(alone.state())))  # as a checkpoint's objective.json holds it
    assert resumed.state() == alone.state()
