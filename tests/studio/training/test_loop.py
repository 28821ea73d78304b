"""The training loop learns the same whether a step's examples are packed or padded, in one
lane or two, and in bf16 on a CPU about what it learns in fp32."""

from __future__ import annotations

import threading

import pytest
import torch

from studio.config import LoraConfig, QuantizationConfig, TrainingConfig
from studio.modeling.compute import resolve_plan
from tests.support import demo_conversations


@pytest.fixture(scope="module")
def examples(tiny_tokenizer):
    return demo_conversations(tiny_tokenizer, 24)


def _train(tiny_model_dir, examples, tmp_path, **training) -> tuple[list[float], list[float]]:
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from studio.training.loop import Trainer

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model = get_peft_model(base, PeftLoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    config = TrainingConfig(
        learning_rate=5e-3,
        max_steps=4,
        batch_size=2,
        gradient_accumulation_steps=3,
        logging_steps=1,
        eval_steps=2,
        save_steps=1000,
        **({"precision": "fp32"} | training),
    )
    plan = resolve_plan(QuantizationConfig(method="none"), config, cuda=False)
    losses, evals = [], []

    def emit(event):
        (losses if event.type == "step" else evals).append(event.loss if event.type == "step" else event.eval_loss)

    trainer = Trainer(
        model,
        train=examples[:18],
        val=examples[18:],
        config=config,
        lora=LoraConfig(),
        plan=plan,
        checkpoints_dir=tmp_path,
        emit=emit,
        abort=threading.Event(),
    )
    trainer.run()
    return losses, evals


def test_packed_and_padded_training_follow_the_same_curve(tiny_model_dir, examples, tmp_path):
    packed = _train(tiny_model_dir, examples, tmp_path / "a", packing=True, micro_batch_tokens=200)
    padded = _train(tiny_model_dir, examples, tmp_path / "b", packing=False)
    assert len(packed[0]) == 4 and len(packed[1]) == 2
    for ours, reference in zip(packed[0] + packed[1], padded[0] + padded[1]):
        assert ours == pytest.approx(reference, abs=1e-3)
    assert packed[0][-1] < packed[0][0]  # and it learns


def test_lanes_learn_what_one_lane_learns_and_repeat_exactly(tiny_model_dir, examples, tmp_path):
    one = _train(tiny_model_dir, examples, tmp_path / "a", micro_batch_tokens=120, micro_batch_lanes=1)
    two = _train(tiny_model_dir, examples, tmp_path / "b", micro_batch_tokens=120, micro_batch_lanes=2)
    again = _train(tiny_model_dir, examples, tmp_path / "c", micro_batch_tokens=120, micro_batch_lanes=2)
    for ours, reference in zip(two[0] + two[1], one[0] + one[1]):
        assert ours == pytest.approx(reference, abs=1e-4)
    assert two == again  # gradients are added in micro-batch order, not in the order lanes finish


def test_bf16_on_cpu_follows_the_fp32_curve_and_repeats_exactly(tiny_model_dir, examples, tmp_path):
    fp32 = _train(tiny_model_dir, examples, tmp_path / "a", micro_batch_tokens=120, micro_batch_lanes=2)
    bf16 = _train(
        tiny_model_dir, examples, tmp_path / "b", micro_batch_tokens=120, micro_batch_lanes=2, precision="bf16"
    )
    again = _train(
        tiny_model_dir, examples, tmp_path / "c", micro_batch_tokens=120, micro_batch_lanes=2, precision="bf16"
    )
    assert bf16 != fp32, "bf16 ran as bf16 (autocast on the CPU)"
    for ours, reference in zip(bf16[0] + bf16[1], fp32[0] + fp32[1]):
        assert ours == pytest.approx(reference, abs=0.05)
    assert bf16[0][-1] < bf16[0][0]
    assert bf16 == again


def test_steps_between_logged_ones_send_heartbeats(tiny_model_dir, examples, tmp_path, monkeypatch):
    """Progress moves every step: a heartbeat (step, elapsed, ETA) between logged steps, at most one a second."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from studio.training import loop

    monkeypatch.setattr(loop, "HEARTBEAT_S", 0.0)  # every step, so that a short test sees them
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), PeftLoraConfig(r=4, target_modules="all-linear")
    )
    config = TrainingConfig(
        max_steps=5,
        batch_size=2,
        gradient_accumulation_steps=1,
        logging_steps=1000,
        eval_steps=1000,
        save_steps=1000,
        precision="fp32",
    )
    events = []
    trainer = loop.Trainer(
        model,
        train=examples[:18],
        val=[],
        config=config,
        lora=LoraConfig(),
        plan=resolve_plan(QuantizationConfig(method="none"), config, cuda=False),
        checkpoints_dir=tmp_path,
        emit=events.append,
        abort=threading.Event(),
    )
    trainer.run()
    assert [(e.type, e.step) for e in events] == [
        ("step", 1),
        ("heartbeat", 2),
        ("heartbeat", 3),
        ("heartbeat", 4),
        ("step", 5),
    ]
    assert all(e.eta_s is not None and e.total_steps == 5 for e in events if e.type == "heartbeat")
