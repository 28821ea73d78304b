"""Where and in what a run computes: 'auto' precision follows the hardware."""

from __future__ import annotations

import torch

from studio.config import QuantizationConfig, TrainingConfig
from studio.modeling import compute
from studio.modeling.compute import resolve_plan


def test_auto_precision_on_cpu_is_bf16_only_where_the_cpu_computes_it(monkeypatch):
    none = QuantizationConfig(method="none")
    monkeypatch.setattr(compute, "cpu_computes_bf16", lambda: True)
    native = resolve_plan(none, TrainingConfig(), cuda=False)
    assert native.weight_dtype == native.compute_dtype == torch.bfloat16
    assert native.method == "LoRA on bf16 weights (no quantisation) on CPU"
    monkeypatch.setattr(compute, "cpu_computes_bf16", lambda: False)
    assert resolve_plan(none, TrainingConfig(), cuda=False).weight_dtype == torch.float32
    assert (
        resolve_plan(none, TrainingConfig(precision="bf16"), cuda=False).weight_dtype == torch.bfloat16
    )  # asked for: kept


def test_quantised_compute_follows_the_training_precision(monkeypatch):
    monkeypatch.setattr(compute, "cpu_computes_bf16", lambda: True)
    plan = resolve_plan(QuantizationConfig(method="4bit"), TrainingConfig(), cuda=False)
    assert plan.compute_dtype == torch.bfloat16 and "compute bf16" in plan.method
    pinned = resolve_plan(QuantizationConfig(method="4bit", compute_dtype="fp32"), TrainingConfig(), cuda=False)
    assert pinned.compute_dtype == torch.float32


def test_the_cpu_probe_answers():
    assert isinstance(compute.cpu_computes_bf16(), bool)
