"""Shared fixtures: a tiny random Qwen2 model built offline, isolated runs and device locks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from studio.modeling.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-qwen2")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture
def locks(tmp_path):
    from studio.device_lock import DeviceLocks

    return DeviceLocks(tmp_path / "locks")


@pytest.fixture
def service(tmp_path, locks):
    from studio.service import TrainingService

    return TrainingService(tmp_path / "runs", locks=locks)


@pytest.fixture
def tiny_config(tiny_model_dir):
    """A RunConfig on the tiny model; keyword overrides use dotted names: tiny_config(**{"training.max_steps": "5"})."""
    from studio.config import RunConfig

    def make(**overrides: str) -> RunConfig:
        base = {
            "name": "tiny",
            "model.name_or_path": str(tiny_model_dir),
            "quantization.method": "4bit",
            "data.max_samples": "40",
            "training.learning_rate": "5e-3",
            "training.max_steps": "12",
            "training.logging_steps": "1",
            "training.eval_steps": "6",
            "training.save_steps": "1000",
            "training.gradient_checkpointing": "false",
        }
        return RunConfig().with_overrides({**base, **overrides})

    return make
