"""The model a run trains: base loaded as planned, kernels patched, frozen, LoRA attached."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from studio.config import LoraConfig, ModelConfig, QuantizationConfig, TrainingConfig
from studio.modeling.compute import ComputePlan
from studio.training.levers import DEFAULT_LEVERS, Levers

if TYPE_CHECKING:
    import torch
    from peft import PeftModel


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
) -> PeftModel:
    """`planned_tokens`: about how many tokens the run trains on, which 'auto' compilation weighs
    its cost against. `levers.lean_mlp` and `levers.uncast_lora_inputs` are honoured here."""
    from studio.modeling.liger import apply_liger_kernels
    from studio.modeling.loader import attach_lora, load_base_model, prepare_for_training

    base = load_base_model(model, model_path, plan)
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
    peft_model = attach_lora(base, lora)
    if plan.autocast and levers.uncast_lora_inputs:
        keep_inputs_uncast(peft_model)
    if plan.quantize_4bit and plan.device == "cpu":
        keep_4bit_layout(peft_model)
    if plan.quantize_4bit:
        from studio.modeling.dequantized_cache import cache_dequantized_weights, should_cache

        if should_cache(peft_model, quantization.cache_dequantized, plan):
            swapped = cache_dequantized_weights(peft_model, plan.compute_dtype)
            info(f"Training on dequantised copies of {swapped} 4-bit layers (quantization.cache_dequantized).")
    if compile_layers:
        from studio.modeling.compiled import compile_decoder_layers

        count = compile_decoder_layers(peft_model)
        info(f"Compiling {count} decoder layers with torch.compile (the first steps include the compilation).")
    return peft_model


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
