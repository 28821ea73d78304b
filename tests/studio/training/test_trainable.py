"""The trainable model: frozen weights keep their dtype, the dequantised cache computes what 4-bit computes,
compiled layers compute what eager layers compute, GPU-only kernels stay off on CPU."""

from __future__ import annotations

import pytest
import torch

from studio.config import FinetuningConfig, ModelConfig, QuantizationConfig, TrainingConfig
from studio.modeling.compute import resolve_plan
from studio.training.token_losses import TokenLosses
from tests.support import demo_conversations, trainable_model


@pytest.fixture(scope="module")
def examples(tiny_tokenizer):
    return demo_conversations(tiny_tokenizer, 6)


def _losses_and_grads(tiny_model_dir, examples, lines=None, **settings):
    quantization = QuantizationConfig(
        method=settings.pop("method", "4bit"), cache_dequantized=settings.pop("cache", "off")
    )
    training = TrainingConfig(gradient_checkpointing="off", **({"precision": "fp32"} | settings))  # exact comparisons
    model, _ = trainable_model(tiny_model_dir, training, quantization, info=(lines if lines is not None else []).append)
    for name, parameter in model.named_parameters():
        if "lora_B" in name:  # a non-zero adapter, so the LoRA path is part of the comparison
            torch.nn.init.normal_(parameter, std=0.05, generator=torch.Generator().manual_seed(1))
    losses = TokenLosses(model, device="cpu", packing=True, token_budget=10**6, batch_size=2)(examples)
    losses.sum().backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return model, losses.detach(), grads


def test_dequantised_cache_trains_on_the_same_values_as_4bit(tiny_model_dir, examples):
    lines = []
    four_bit, losses, grads = _losses_and_grads(tiny_model_dir, examples)
    cached, cached_losses, cached_grads = _losses_and_grads(tiny_model_dir, examples, lines, cache="on")
    assert any(type(m).__name__ == "Linear4bit" for m in four_bit.modules())
    # no in-place inference repacking of 4-bit weights (AVX512-BF16 CPUs) in a model that trains in lanes
    assert not any(getattr(m, "support_avx512bf16_for_cpu", False) for m in four_bit.modules())
    assert not any(type(p).__name__ == "Params4bit" for p in cached.parameters()), "the 4-bit copies are freed"
    assert any("dequantised copies of" in line for line in lines)
    torch.testing.assert_close(cached_losses, losses, atol=1e-5, rtol=0)
    torch.testing.assert_close(cached_grads, grads, atol=1e-5, rtol=1e-4)


def test_auto_cache_and_compile_stay_off_on_cpu(tiny_model_dir, examples):
    lines = []
    model, _, _ = _losses_and_grads(tiny_model_dir, examples, lines, cache="auto")
    assert any(type(p).__name__ == "Params4bit" for p in model.parameters())
    assert not [line for line in lines if "MLPs keep" not in line], lines  # no cache, no compilation, no Liger on CPU
    assert not TrainingConfig().use_compile("cpu")


def test_auto_compile_weighs_the_run_length():
    config = TrainingConfig()
    assert config.use_compile("cuda") and config.use_compile("cuda", 5_000_000)
    assert not config.use_compile("cuda", 20_000)  # a short run would wait longer for the compiler than it saves
    assert TrainingConfig(compile="on").use_compile("cpu", 10)
    assert not TrainingConfig(compile=False).use_compile("cuda", 10**9)


def test_frozen_half_precision_weights_are_not_upcast(tiny_model_dir):
    from studio.modeling.loader import load_base_model, prepare_for_training

    plan = resolve_plan(QuantizationConfig(method="none"), TrainingConfig(precision="bf16"), cuda=False)
    model = prepare_for_training(
        load_base_model(ModelConfig(name_or_path=str(tiny_model_dir)), str(tiny_model_dir), plan), plan, True
    )
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert not any(p.requires_grad for p in model.parameters())
    assert model.is_gradient_checkpointing


@pytest.mark.slow
def test_compiled_layers_compute_what_eager_layers_compute(tiny_model_dir, examples):
    eager_model, eager, eager_grads = _losses_and_grads(tiny_model_dir, examples[:3], method="none")
    lines = []
    _, compiled, compiled_grads = _losses_and_grads(tiny_model_dir, examples[:3], lines, method="none", compile="on")
    assert any("Compiling" in line for line in lines)
    torch.testing.assert_close(compiled, eager, atol=1e-4, rtol=0)
    torch.testing.assert_close(compiled_grads, eager_grads, atol=1e-4, rtol=1e-3)


def test_under_autocast_lora_inputs_are_shared_not_cast(tiny_model_dir, examples):
    model, _ = trainable_model(tiny_model_dir, TrainingConfig(precision="bf16", gradient_checkpointing="off"))
    lora_layers = [m for m in model.modules() if hasattr(m, "cast_input_dtype_enabled")]
    assert lora_layers and not any(m.cast_input_dtype_enabled for m in lora_layers)

    def losses_and_kept(cast: bool):
        for layer in lora_layers:
            layer.cast_input_dtype_enabled = cast
        kept = {}

        def keep(tensor):
            kept[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t), torch.autocast("cpu", torch.bfloat16):
            losses = TokenLosses(model, device="cpu", packing=True, token_budget=10**6, batch_size=2)(examples[:3])
        return losses.detach(), sum(kept.values())

    cast_losses, cast_kept = losses_and_kept(True)
    shared_losses, shared_kept = losses_and_kept(False)
    torch.testing.assert_close(shared_losses, cast_losses, atol=0, rtol=0)
    assert shared_kept < cast_kept


@pytest.mark.parametrize("method", ["full", "freeze"])
def test_whole_model_methods_train_the_checkpoint_s_own_fp32_weights(tiny_model_dir, method):
    """Rounded to bf16 first, trained weights would sit on its grid, where the bf16 forward misses every update under
    half a step: an fp32 checkpoint learned much less in its first steps than in LLaMA-Factory (docs/benchmarks.md)."""
    from safetensors.torch import load_file

    saved = load_file(tiny_model_dir / "model.safetensors")
    finetuning = FinetuningConfig(method=method, freeze_trainable_layers=1)
    training = TrainingConfig(precision="bf16", gradient_checkpointing="off")
    model, plan = trainable_model(tiny_model_dir, training, finetuning=finetuning)
    assert plan.autocast and saved["model.norm.weight"].dtype == torch.float32
    trained = {name: p for name, p in model.named_parameters() if p.requires_grad}
    frozen = {name: p for name, p in model.named_parameters() if not p.requires_grad}
    assert trained and (method == "full") == (not frozen)
    for name, parameter in trained.items():
        assert parameter.dtype == torch.float32 and torch.equal(parameter.detach(), saved[name]), name
    assert all(p.dtype == torch.bfloat16 for p in frozen.values())  # they never change: the planned dtype

    pure, _ = trainable_model(tiny_model_dir, training.model_copy(update={"pure_bf16": True}), finetuning=finetuning)
    assert all(p.dtype == torch.bfloat16 for p in pure.parameters())  # pure_bf16 trains bf16 weights as loaded
