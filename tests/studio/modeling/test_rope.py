"""RoPE scaling (model.rope_scaling, model.rope_factor): written into the model's config before loading with
LLaMA-Factory's rule for the factor, it changes the rotary positions as each type says, wherever a run's base loads."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from transformers import Gemma3TextConfig, LlamaConfig, Qwen2Config

from studio.config import ModelConfig, QuantizationConfig, TrainingConfig
from studio.config.base import ConfigError
from studio.modeling.compute import resolve_plan
from studio.modeling.loader import load_base_model
from studio.modeling.rope import apply_rope_scaling

PLAN = resolve_plan(QuantizationConfig(method="none"), TrainingConfig(precision="fp32"), cuda=False)
THETA = 12345.0


@pytest.fixture(scope="module")
def short_model(tiny_model_dir, tmp_path_factory):
    """The tiny model with a pretrained context of 64 positions and its own RoPE base."""
    folder = tmp_path_factory.mktemp("short") / "tiny-short"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["max_position_embeddings"] = 64
    config["rope_parameters"] = {"rope_type": "default", "rope_theta": THETA}
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


def _scaled(short_model, kind: str, cutoff_len: int | None = 128, **settings):
    lines = []
    config = ModelConfig(name_or_path=short_model, rope_scaling=kind, **settings)
    model = load_base_model(config, short_model, PLAN, cutoff_len=cutoff_len, info=lines.append)
    return model, lines


def _rotary(model, positions: torch.Tensor) -> torch.Tensor:
    x = torch.zeros(1, 1, model.config.hidden_size)
    cos, sin = model.model.rotary_emb(x, positions.view(1, -1))
    return torch.cat([cos, sin], dim=-1)[0]


def test_linear_scaling_reaches_the_config_and_halves_every_position(short_model):
    plain = load_base_model(ModelConfig(name_or_path=short_model), short_model, PLAN)
    scaled, lines = _scaled(short_model, "linear")  # data.cutoff_len 128 over a context of 64: factor 2
    parameters = scaled.config.rope_parameters
    assert parameters == {"rope_type": "linear", "factor": 2.0, "rope_theta": THETA}  # the model's base kept
    assert scaled.config.max_position_embeddings == 128
    assert lines == ["RoPE scaling linear ×2: 64 pretrained positions stretched to 128."]
    even = torch.arange(0, 128, 2)
    torch.testing.assert_close(_rotary(scaled, even), _rotary(plain, even // 2))
    ids = torch.randint(0, 2000, (1, 128), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert not torch.allclose(scaled(ids).logits[0, 64:], plain(ids).logits[0, 64:], atol=1e-4)


def test_the_factor_follows_llamafactorys_rule():
    def factor(cutoff_len, **settings):
        config = Qwen2Config(max_position_embeddings=64)
        line = apply_rope_scaling(config, ModelConfig(rope_scaling="linear", **settings), cutoff_len)
        return config.rope_parameters.get("factor"), config.max_position_embeddings, line

    assert factor(64) == (None, 64, "RoPE not scaled: data.cutoff_len 64 fits the pretrained context of 64 tokens.")
    assert factor(130)[:2] == (3.0, 192)  # ceil(130 / 64)
    assert factor(None)[:2] == (2.0, 128)  # no run's data (a base loaded to chat): LLaMA-Factory's inference factor
    assert factor(10, rope_factor=1.5)[:2] == (1.5, 96)  # a factor given is used as given
    config = Qwen2Config(max_position_embeddings=64)
    assert apply_rope_scaling(config, ModelConfig(), 1000) is None and config.rope_parameters["rope_type"] == "default"


def test_yarn_and_llama3_carry_the_pretrained_context_and_dynamic_keeps_it():
    yarn, llama3, dynamic = (Qwen2Config(max_position_embeddings=64, rope_theta=THETA) for _ in range(3))
    apply_rope_scaling(yarn, ModelConfig(rope_scaling="yarn"), 256)
    assert yarn.rope_parameters == {
        "rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64, "rope_theta": THETA
    }  # fmt: skip
    apply_rope_scaling(llama3, ModelConfig(rope_scaling="llama3"), 256)
    assert llama3.rope_parameters["original_max_position_embeddings"] == 64
    assert (llama3.rope_parameters["low_freq_factor"], llama3.rope_parameters["high_freq_factor"]) == (1.0, 4.0)
    apply_rope_scaling(dynamic, ModelConfig(rope_scaling="dynamic"), 256)
    assert dynamic.rope_parameters == {"rope_type": "dynamic", "factor": 4.0, "rope_theta": THETA}
    assert dynamic.max_position_embeddings == 64  # where transformers' dynamic NTK starts raising the base


def test_dynamic_scaling_changes_positions_only_in_sequences_longer_than_the_pretrained_context(short_model):
    plain = load_base_model(ModelConfig(name_or_path=short_model), short_model, PLAN)
    dynamic, _ = _scaled(short_model, "dynamic")
    short, long = torch.arange(48), torch.arange(128)
    torch.testing.assert_close(_rotary(dynamic, short), _rotary(plain, short))
    assert not torch.allclose(_rotary(dynamic, long)[1:], _rotary(plain, long)[1:])


def test_a_model_that_already_scales_is_rescaled_from_its_original_context():
    config = LlamaConfig(
        max_position_embeddings=131072,
        rope_parameters={
            "rope_type": "llama3", "factor": 32.0, "original_max_position_embeddings": 8192, "rope_theta": 500000.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        },
    )  # fmt: skip  # Llama 3.2's
    line = apply_rope_scaling(config, ModelConfig(rope_scaling="linear"), 16384)
    assert config.rope_parameters == {"rope_type": "linear", "factor": 2.0, "rope_theta": 500000.0}
    assert config.max_position_embeddings == 16384
    assert "replacing the model's own llama3 ×32.0 scaling" in line


def test_each_layer_types_parameters_are_scaled_with_their_own_base():
    config = Gemma3TextConfig(max_position_embeddings=64, num_hidden_layers=6)  # 5 sliding, 1 full
    bases = {kind: parameters["rope_theta"] for kind, parameters in config.rope_parameters.items()}
    apply_rope_scaling(config, ModelConfig(rope_scaling="linear"), 200)
    assert set(config.rope_parameters) == set(bases) == {"sliding_attention", "full_attention"}
    for kind, parameters in config.rope_parameters.items():
        assert parameters == {"rope_type": "linear", "factor": 4.0, "rope_theta": bases[kind]}


def test_a_factor_without_a_scaling_type_is_refused():
    from studio.config import RunConfig

    with pytest.raises(ConfigError, match="rope_scaling"):
        RunConfig().with_overrides({"model.rope_factor": "2"})
    assert RunConfig().with_overrides({"model.rope_factor": "2", "model.rope_scaling": "yarn"}).model.rope_factor == 2


def test_the_chat_engine_loads_a_runs_base_scaled_as_the_run_trained_it(short_model):
    from studio.chat import ChatEngine

    engine = ChatEngine()
    config = ModelConfig(name_or_path=short_model, rope_scaling="linear")
    engine.load(config, QuantizationConfig(method="none"), cutoff_len=200)
    assert engine.model.config.rope_parameters["factor"] == 4.0
    engine.unload()
