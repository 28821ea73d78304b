"""Shared fixtures: a tiny random Qwen2 model built offline, isolated runs and device locks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import make_adapter

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_collection_modifyitems(items):
    """Every test of a `*_browser.py` module drives Chromium: marked `browser` by its file name, never forgotten."""
    for item in items:
        if item.path.name.endswith("_browser.py"):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from studio.dev.tiny_models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-qwen2")


@pytest.fixture(scope="session")
def tiny_vl_model_dir(tmp_path_factory) -> Path:
    from studio.dev.tiny_models import build_tiny_vl_model

    return build_tiny_vl_model(tmp_path_factory.mktemp("models") / "tiny-qwen2-vl")


@pytest.fixture(scope="session")
def tiny_qwen2_5_vl_model_dir(tmp_path_factory) -> Path:
    from studio.dev.tiny_models import build_tiny_vl_model

    return build_tiny_vl_model(tmp_path_factory.mktemp("models") / "tiny-qwen2.5-vl", family="qwen2_5_vl")


@pytest.fixture(scope="session")
def tiny_qwen3_vl_model_dir(tmp_path_factory) -> Path:
    from studio.dev.tiny_models import build_tiny_vl_model

    return build_tiny_vl_model(tmp_path_factory.mktemp("models") / "tiny-qwen3-vl", family="qwen3_vl")


# each vision-language family's tiny model, by config.json's model_type
VL_MODEL_FIXTURES = {
    "qwen2_vl": "tiny_vl_model_dir",
    "qwen2_5_vl": "tiny_qwen2_5_vl_model_dir",
    "qwen3_vl": "tiny_qwen3_vl_model_dir",
}


@pytest.fixture(scope="session", params=list(VL_MODEL_FIXTURES))
def each_vl_model_dir(request) -> Path:
    """The tiny model of each vision-language family in turn, for checks that must hold for every family."""
    return request.getfixturevalue(VL_MODEL_FIXTURES[request.param])


@pytest.fixture(scope="session")
def tool_model_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny model taught to think, call get_weather and answer from its result (tests/support/tool_model.py)."""
    from tests.support.tool_model import build_tool_model

    return build_tool_model(tiny_model_dir, tmp_path_factory.mktemp("models") / "tiny-tools")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture
def locks(tmp_path):
    from studio.control.device_lock import DeviceLocks

    return DeviceLocks(tmp_path / "locks")


@pytest.fixture
def service(tmp_path, locks):
    from studio.control.service import TrainingService

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


@pytest.fixture(scope="session")
def strong_adapter(tmp_path_factory, tiny_model_dir):
    return make_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapters") / "strong", seed=1)


@pytest.fixture(scope="session")
def second_adapter(tmp_path_factory, tiny_model_dir):
    return make_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapters") / "second", seed=2)


@pytest.fixture(scope="session")
def foreign_adapter(tmp_path_factory):
    from studio.dev.tiny_models import build_tiny_model

    other = build_tiny_model(tmp_path_factory.mktemp("models") / "other", hidden=32)
    return make_adapter(other, tmp_path_factory.mktemp("adapters") / "foreign", seed=3)


@pytest.fixture(scope="session")
def three_runs(tmp_path_factory, tiny_model_dir):
    """A runs folder for Compare: 'small' (rank 4, evaluated) and 'wide' (rank 16, lr 1e-2) finished, 'broken' killed
    at step 2 (failed). Real workers; returns (runs_dir, {name: run_id})."""
    import signal

    from studio.api import Studio
    from studio.config import RunConfig
    from studio.control.device_lock import DeviceLocks
    from tests.support import quick_run, wait_for

    root = tmp_path_factory.mktemp("compared")
    studio = Studio(root / "runs", locks=DeviceLocks(root / "locks"))
    common = {**quick_run(tiny_model_dir), "training.max_steps": "6", "training.eval_steps": "3"}
    variants = {
        "small": {"lora.rank": "4"},
        "wide": {"lora.rank": "16", "training.learning_rate": "1e-2"},
        "broken": {"lora.rank": "8", "training.max_steps": "100000", "training.eval_steps": "100000"},
    }
    ids = {}
    for name, overrides in variants.items():
        config = RunConfig().with_overrides({**common, "name": name, **overrides})
        ids[name] = studio.start(config)
        if name == "broken":
            wait_for(
                lambda run=ids[name]: any(e.type == "step" and e.step >= 2 for e in studio.events(run)[0]),
                timeout=180,
                what="step 2 of the run to kill",
            )
            os.kill(studio.status(ids[name]).pid, signal.SIGKILL)
        assert studio.wait(ids[name], timeout=300).state == ("failed" if name == "broken" else "finished")
    small = RunConfig().with_overrides({**common, "name": "small", **variants["small"]})
    studio.evaluate(small, str(root / "runs" / ids["small"] / "adapter"), compare=True)
    return root / "runs", ids


# finetuning.method -> its overrides; a high learning rate for a few steps, so that greedy answers change
METHOD_RUNS = {
    "full": {"finetuning.method": "full"},
    "freeze": {"finetuning.method": "freeze", "finetuning.freeze_trainable_layers": "1"},
    "oft": {"finetuning.method": "oft"},
}


@pytest.fixture(scope="session")
def method_runs(tmp_path_factory, tiny_model_dir):
    """Finished runs of the tiny model, one per finetuning.method in METHOD_RUNS, each trained through the real
    worker on first use, in one runs folder (the run is named after its method). Returns run(method) -> RunFolder."""
    from tests.support import run_worker

    runs_dir, made = tmp_path_factory.mktemp("method-runs"), {}
    fast = {
        "training.learning_rate": "5e-2",
        "training.max_steps": "3",
        "training.eval_steps": "100",
        "data.max_samples": "12",
    }

    def run(method: str):
        if method not in made:
            made[method], _ = run_worker(runs_dir / method, tiny_model_dir, **fast, **METHOD_RUNS[method])
        return made[method]

    return run
