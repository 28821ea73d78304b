"""Reward model, PPO and GRPO runs through the real worker process on the tiny model: what they stream, what they
save, and how they end when a reward file breaks."""

from __future__ import annotations

import json
import math

import pytest

from studio.adapters import scan_adapters
from studio.config import PpoConfig
from tests.support import run_worker

GRPO = {
    "training.stage": "grpo",
    "data.datasets": "[arithmetic_zh_demo]",
    "data.max_samples": "12",
    "training.batch_size": "2",
    "training.gradient_accumulation_steps": "1",
    "generation.max_new_tokens": "8",
    "grpo.num_generations": "3",
    "rewards.format": "1.0",
    "rewards.length": "0.5",
    "rewards.length_max": "12",
}


@pytest.fixture(scope="module")
def reward_run(tmp_path_factory, tiny_model_dir):
    runs = tmp_path_factory.mktemp("rl-runs")
    folder, events = run_worker(
        runs / "rm-run", tiny_model_dir, **{"training.stage": "rm", "data.datasets": "[dpo_zh_demo]"}
    )
    return runs, folder, events


def test_a_reward_model_starts_at_ln_2_and_is_saved_with_its_value_head(reward_run):
    runs, folder, events = reward_run
    steps = [e for e in events if e.type == "step"]
    assert steps[0].loss == pytest.approx(math.log(2), abs=3e-3)  # ln 2 as bf16 rounds it where the CPU computes bf16
    evals = [e for e in events if e.type == "preference" and e.split == "eval"]
    assert len(evals) == 2 and all(0 <= e.reward_accuracy <= 1 for e in evals)
    assert (folder.adapter_dir / "value_head.safetensors").is_file()
    (listed,) = scan_adapters(runs).adapters
    assert listed.reward_model and listed.name == "rm-run"


def test_ppo_against_the_reward_model_streams_rewards_kl_and_answers(reward_run, tiny_model_dir):
    runs, _, _ = reward_run
    folder, events = run_worker(
        runs / "ppo-run",
        tiny_model_dir,
        **{
            "training.stage": "ppo",
            "ppo.reward_model": "rm-run",
            "ppo.ppo_epochs": "2",
            "data.datasets": "[alpaca_zh_demo]",
            "generation.max_new_tokens": "8",
            "training.batch_size": "2",
            "training.gradient_accumulation_steps": "1",
            "training.save_steps": "2",
        },
    )
    kept = json.loads((folder.latest_checkpoint() / "objective.json").read_text())  # resumes where it was
    assert kept["kl_coef"] != PpoConfig().init_kl_coef and len(kept["score_moments"]) == 3
    train = [e for e in events if e.type == "rewards" and e.split == "train"]
    assert len(train) == 4 and all(e.value_loss is not None and e.kl is not None for e in train)
    assert any(e.type == "rewards" and e.split == "eval" for e in events)
    answers = [e for e in events if e.type == "answers"]
    assert answers and all(row.prompt and isinstance(row.reward, float) for row in answers[-1].rows)
    assert events[-1].type == "finished"


def test_ppo_refuses_a_reward_model_that_is_not_one(reward_run, tiny_model_dir):
    runs, _, _ = reward_run
    _, events = run_worker(
        runs / "ppo-bad",
        tiny_model_dir,
        expect_exit=1,
        **{"training.stage": "ppo", "ppo.reward_model": "no-such-run", "data.datasets": "[alpaca_zh_demo]"},
    )
    assert events[-1].type == "failed" and "no-such-run" in events[-1].error


def test_grpo_streams_each_reward_function_and_the_latest_answers(tmp_path, tiny_model_dir):
    _, events = run_worker(tmp_path / "grpo", tiny_model_dir, **GRPO)
    train = [e for e in events if e.type == "rewards" and e.split == "train"]
    assert len(train) == 4
    assert set(train[0].functions) == {"accuracy", "format", "length"} and train[0].flat_groups is not None
    answers = [e for e in events if e.type == "answers"]
    assert len(answers) == 4 and len(answers[-1].rows) == 3  # the latest group: one prompt's three answers
    assert answers[-1].rows[0].reference and "<answer>" in answers[-1].rows[0].reference
    evals = [e for e in events if e.type == "rewards" and e.split == "eval"]
    assert len(evals) == 2 and not any(e.type == "eval" for e in events)  # no eval loss: the reward instead


def test_grpo_samples_a_4bit_bf16_model_under_the_runs_autocast(tmp_path, tiny_model_dir):
    _, events = run_worker(
        tmp_path / "grpo-4bit",
        tiny_model_dir,
        **GRPO,
        **{"quantization.method": "4bit", "training.precision": "bf16", "training.max_steps": "2"},
    )
    assert [e.step for e in events if e.type == "rewards" and e.split == "train"] == [1, 2]


def test_grpo_resumes_from_a_checkpoint_with_the_same_samples(tmp_path, tiny_model_dir):
    whole, whole_events = run_worker(tmp_path / "whole", tiny_model_dir, **GRPO, **{"training.save_steps": "2"})
    checkpoint = whole.checkpoints_dir / "checkpoint-2"
    assert checkpoint.is_dir()
    _, resumed = run_worker(
        tmp_path / "resumed", tiny_model_dir, **GRPO, **{"training.resume_from_checkpoint": str(checkpoint)}
    )
    steps = [e for e in resumed if e.type == "step"]
    assert [e.step for e in steps] == [3, 4]
    # the resumed run samples what the whole one sampled at steps 3 and 4
    whole_answers = {e.step: [row.answer for row in e.rows] for e in whole_events if e.type == "answers"}
    resumed_answers = {e.step: [row.answer for row in e.rows] for e in resumed if e.type == "answers"}
    assert resumed_answers == {step: whole_answers[step] for step in (3, 4)}


def test_a_reward_file_that_raises_fails_the_run_with_its_traceback(tmp_path, tiny_model_dir):
    reward = tmp_path / "broken_reward.py"
    reward.write_text("def reward(prompt, answer, reference):\n    raise ValueError('no such rule')\n")
    _, events = run_worker(
        tmp_path / "grpo-bad", tiny_model_dir, expect_exit=1, **GRPO, **{"rewards.file": str(reward)}
    )
    failed = events[-1]
    assert failed.type == "failed"
    assert "broken_reward.py" in failed.error and "ValueError: no such rule" in failed.error
    assert not any(e.type == "step" for e in events)  # it failed at the first step's scoring, nothing half-trained
