"""Each lever of `Levers`, turned off, still trains and learns what the studio's defaults learn:
they are speed techniques, not changes to the maths. And the benchmark's variants are all
valid configs and levers, so renaming a lever breaks this test, not a benchmark run."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import threading
from pathlib import Path

import pytest

from studio.config import LoraConfig, QuantizationConfig, TrainingConfig
from studio.training import varlen_attention
from studio.training.levers import Levers
from studio.training.loop import Trainer
from tests.support import demo_conversations, trainable_model

BENCH = Path(__file__).resolve().parents[3] / "bench"

# two steps of 6 examples; 120-token micro-batches so each of the 2 lanes runs several
BASE = dict(micro_batch_tokens=120, micro_batch_lanes=2, precision="fp32")


@pytest.fixture(scope="module")
def examples(tiny_tokenizer):
    return demo_conversations(tiny_tokenizer, 12)


def _train(model_dir: Path, examples, tmp_path: Path, levers: Levers, **settings) -> tuple[list[float], Trainer]:
    """Two real optimizer steps of the model the worker would build: the loss and gradient norm of
    each (the norm, because Adam's first update hardly depends on the gradient's size), and the trainer."""
    training = TrainingConfig(
        learning_rate=5e-3,
        max_steps=2,
        batch_size=2,
        gradient_accumulation_steps=3,
        logging_steps=1,
        eval_steps=1000,
        save_steps=1000,
        gradient_checkpointing="off",
        **(BASE | settings),
    )
    model, plan = trainable_model(model_dir, training, levers=levers)
    curve = []
    trainer = Trainer(
        model,
        train=examples,
        val=[],
        config=training,
        lora=LoraConfig(),
        plan=plan,
        checkpoints_dir=tmp_path,
        emit=lambda event: curve.extend([event.loss, event.grad_norm]),
        abort=threading.Event(),
        levers=levers,
    )
    trainer.run()
    return curve, trainer


def _mlps_lean(trainer) -> bool:
    return any("forward" in vars(m) for m in trainer.model.modules() if type(m).__name__ == "Qwen2MLP")


def _plans(trainer) -> list:
    return trainer.token_losses.lane_plans(trainer.train)


def _lanes_by_length(trainer) -> bool:
    """Whether each lane's padded micro-batches run shortest to longest, as length grouping makes them."""
    lengths = [[len(e.input_ids) for group in plan for e in group] for plan in _plans(trainer)]
    return all(lane == sorted(lane) for lane in lengths)


# lever off, the settings it acts under, and what shows it is off
CASES = {
    "fused_cross_entropy": ({}, lambda t: not t.token_losses.fused),
    "label_rows_only": ({}, lambda t: "every position" in t.describe()),
    "cross_entropy_chunk": ({}, lambda t: t.token_losses.chunk == 1),
    "length_grouping": ({"packing": False}, lambda t: not _lanes_by_length(t)),
    "balanced_lanes": ({}, lambda t: all(len(plan) == 1 for plan in _plans(t)) and len(_plans(t)) > 2),
    "grouped_kv_attention": ({}, lambda t: t.model.config._attn_implementation == varlen_attention.REPEATED_KV_NAME),
    "lean_mlp": ({}, lambda t: not _mlps_lean(t)),
    # peft's cast only exists under autocast, so this one trains in bf16 (both ways)
    "uncast_lora_inputs": (
        {"precision": "bf16"},
        lambda t: all(m.cast_input_dtype_enabled for m in t.model.modules() if hasattr(m, "cast_input_dtype_enabled")),
    ),
}


def _off(name: str) -> Levers:
    return Levers(**{name: 1 if name == "cross_entropy_chunk" else False})  # chunk: the smallest, MIN_CHUNK_ROWS rows


@pytest.fixture(scope="module")
def defaults(tiny_model_dir, examples, tmp_path_factory):
    """The losses and trainer with every lever on, per set of settings (trained once each)."""
    cache = {}

    def train(**settings) -> tuple[list[float], Trainer]:
        key = tuple(sorted(settings.items()))
        if key not in cache:
            cache[key] = _train(tiny_model_dir, examples, tmp_path_factory.mktemp("on"), Levers(), **settings)
        return cache[key]

    return train


def test_every_lever_has_a_case():
    assert set(CASES) == {f.name for f in dataclasses.fields(Levers)}


@pytest.mark.parametrize("name", list(CASES))
def test_a_lever_off_trains_to_the_same_losses(name, tiny_model_dir, examples, tmp_path, defaults):
    settings, is_off = CASES[name]
    reference, on = defaults(**settings)
    curve, off = _train(tiny_model_dir, examples, tmp_path, _off(name), **settings)
    assert not is_off(on), f"{name} is on by default"
    assert is_off(off), f"{name} was turned off"
    assert len(curve) == 4  # loss and gradient norm of 2 steps
    assert curve == pytest.approx(reference, abs=1e-4)


def _throughput_sides(monkeypatch):
    spec = importlib.util.spec_from_file_location("throughput_sides", BENCH / "throughput_sides.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "throughput_sides", module)  # where its dataclasses look up their annotations
    spec.loader.exec_module(module)  # imports without a GPU: nothing but data at module level
    return module


def test_every_benchmark_variant_is_a_valid_config_and_levers(monkeypatch):
    sides = _throughput_sides(monkeypatch)
    turned_off = set()
    for name, variant in sides.VARIANTS.items():
        assert name.startswith("ours"), name
        assert isinstance(variant.levers, Levers), name
        training = sides.ours_training(variant, steps=3)  # refuses unknown or invalid fields
        QuantizationConfig(method="none", **variant.quantization)
        assert all(getattr(training, key) == value for key, value in variant.training.items()), name
        turned_off |= {f.name for f in dataclasses.fields(Levers) if getattr(variant.levers, f.name) != f.default}
    assert turned_off == {f.name for f in dataclasses.fields(Levers)}, "every lever is measured by a variant"
    assert sides.VARIANTS["ours"] == sides.Variant()
