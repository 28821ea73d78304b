"""The model a run trains: base loaded as planned, kernels patched, frozen, LoRA attached."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from studio.config import FinetuningConfig, LoraConfig, ModelConfig, QuantizationConfig, TrainingConfig
from studio.modeling.compute import ComputePlan
from studio.training.levers import DEFAULT_LEVERS, Levers

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase


def load_trainable_model(
    *,
    model: ModelConfig,
    quantization: QuantizationConfig,
    training: TrainingConfig,
    lora: LoraConfig,
    model_path: str,
    plan: ComputePlan,
    info: Callable[[str], None] = lambda line: None,
    planned_tokens: int | None = None,
    levers: Levers = DEFAULT_LEVERS,
    finetuning: FinetuningConfig | None = None,
    initial_dir: Path | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    cutoff_len: int | None = None,
) -> torch.nn.Module:
    """`planned_tokens`: about how many tokens the run trains on, which 'auto' compilation weighs
    its cost against. `levers.lean_mlp` and `levers.uncast_lora_inputs` are honoured here. `finetuning`: what
    trains (a LoRA adapter when not given); `initial_dir`: where a PiSSA/OLoRA adapter's start is kept.
    Returns a peft model (lora, oft) or the model itself with the chosen weights trainable (full, freeze)."""
    from studio.modeling.liger import apply_liger_kernels
    from studio.modeling.loader import load_base_model, prepare_for_training
    from studio.modeling.methods import attach_method
    from studio.modeling.neftune import add_neftune
    from studio.modeling.vocab import extra_trainable_modules

    finetuning = finetuning or FinetuningConfig()
    load_plan = _whole_weights_plan(plan) if finetuning.trains_whole_model else plan
    base = load_base_model(model, model_path, load_plan, tokenizer=tokenizer, cutoff_len=cutoff_len, info=info)
    add_neftune(base, training.neftune_alpha)
    # compiled layers fuse what Liger's kernels fuse, and trace more simply without them
    compile_layers = training.use_compile(plan.device, planned_tokens)
    if training.compile == "auto" and plan.device == "cuda" and not compile_layers:
        info(f"Decoder layers not compiled: {planned_tokens:,} tokens to train are too few to repay the compilation.")
    kernels = apply_liger_kernels(base, plan.device, training.liger_kernels and not compile_layers)
    if kernels:
        info(kernels)
    base = prepare_for_training(base, plan, training.use_gradient_checkpointing(plan.device))
    if plan.device == "cpu" and levers.lean_mlp:  # no recomputation on CPU: what autograd keeps is the peak
        from studio.modeling.lean_mlp import use_lean_mlps

        if use_lean_mlps(base):
            info("MLPs keep 2 of their 4 activations for the backward pass (silu recomputed).")
    finetuning, lora = _with_resized_layers(finetuning, lora, extra_trainable_modules(model, base))
    trained = attach_method(base, finetuning, lora, model_path=model_path, initial_dir=initial_dir)
    if load_plan is not plan:
        frozen_to(trained, plan.weight_dtype)
    if plan.autocast and levers.uncast_lora_inputs:
        keep_inputs_uncast(trained)
    if plan.quantize_4bit and plan.device == "cpu":
        keep_4bit_layout(trained)
    if plan.quantize_4bit:
        from studio.modeling.dequantized_cache import cache_dequantized_weights, should_cache

        if should_cache(trained, quantization.cache_dequantized, plan):
            swapped = cache_dequantized_weights(trained, plan.compute_dtype)
            info(f"Training on dequantised copies of {swapped} 4-bit layers (quantization.cache_dequantized).")
    if compile_layers:
        from studio.modeling.compiled import compile_decoder_layers

        count = compile_decoder_layers(trained)
        info(f"Compiling {count} decoder layers with torch.compile (the first steps include the compilation).")
    return trained


def _with_resized_layers(
    finetuning: FinetuningConfig, lora: LoraConfig, layers: list[str]
) -> tuple[FinetuningConfig, LoraConfig]:
    """model.resize_vocab: the embedding and output layers train too, or their new rows would stay random."""
    if not layers:
        return finetuning, lora
    if finetuning.method == "freeze":
        extra = list(dict.fromkeys(finetuning.freeze_extra_modules + layers))
        return finetuning.model_copy(update={"freeze_extra_modules": extra}), lora
    return finetuning, lora.model_copy(update={"modules_to_save": list(dict.fromkeys(lora.modules_to_save + layers))})


def _whole_weights_plan(plan: ComputePlan) -> ComputePlan:
    """Full and freeze train fp32 master weights (unless pure_bf16): loaded at the checkpoint's precision, not
    rounded to the compute dtype first. Weights on bf16's grid would hide from the bf16 forward every update under
    half its step (~1e-4 at 0.05), so an fp32 checkpoint's first steps would learn much less (docs/benchmarks.md)."""
    import dataclasses

    import torch

    if plan.pure_bf16 or plan.quantized or plan.weight_dtype == torch.float32:
        return plan
    return dataclasses.replace(plan, weight_dtype=torch.float32)


def frozen_to(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Frozen floating-point weights (freeze's untrained layers) back to the planned dtype: they never change. The
    trained ones are then copied out of the checkpoint file, which transformers maps rather than reads when the dtype
    is the file's: one weight left on the mapping keeps every page the casts read resident (+470 MiB on the embedded
    model)."""
    frozen = [p for p in model.parameters() if not p.requires_grad and p.is_floating_point()]
    if not frozen:
        return
    for parameter in frozen:
        parameter.data = parameter.data.to(dtype)
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.clone()


def keep_inputs_uncast(model: torch.nn.Module) -> None:
    """Let autocast, not peft, match the dtypes of LoRA's matmuls.

    peft casts each LoRA layer's bf16 input to its fp32 weights' dtype, and under autocast the
    matmul casts it back: a new bf16 copy of the input per LoRA layer, kept for the backward
    pass (q, k and v each keep one of the same hidden states). Uncast, they share the input.
    """
    for module in model.modules():
        if hasattr(module, "cast_input_dtype_enabled"):
            # torch types a Module's attributes as tensors or modules; peft's flag is a plain bool
            module.cast_input_dtype_enabled = False  # type: ignore[assignment]


def keep_4bit_layout(model: torch.nn.Module) -> None:
    """Turn off bitsandbytes' AVX512-BF16 inference repacking in a model that trains.

    On such CPUs a 4-bit layer repacks its weight in place on its first forward without
    gradients (validation): two CPU lanes validating at once repack the same weight twice and
    fail, and the repacked layout is meant for inference. Training keeps the original layout.
    """
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            # torch types a Module's attributes as tensors or modules; bitsandbytes' flag is a plain bool
            module.support_avx512bf16_for_cpu = False  # type: ignore[assignment]
