"""Training on a dequantised copy of the 4-bit base: the QLoRA numbers without the per-matmul dequantisation.

A 4-bit layer dequantises its weight at every forward and again in the backward pass. When
memory allows, each such base layer is swapped once for a plain linear layer holding the very
weights the 4-bit kernel would have produced (dequantised to the compute dtype), so the
matmuls see identical values and skip that work. The 4-bit copies are freed; weights then
take compute-dtype memory (about 4x their 4-bit size).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    import bitsandbytes as bnb

    from studio.modeling.compute import ComputePlan

AUTO_SHARE_OF_GPU = 0.25  # 'auto' caches when the copy takes at most this share of the GPU's memory


def should_cache(model: torch.nn.Module, setting: str, plan: ComputePlan) -> bool:
    if setting != "auto":
        return setting == "on"
    if plan.device != "cuda":
        return False
    size = dequantized_bytes(model, plan.compute_dtype)
    return size <= AUTO_SHARE_OF_GPU * torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory


def dequantized_bytes(model: torch.nn.Module, compute_dtype: torch.dtype) -> int:
    """What the cached copies would take: two 4-bit weights per stored byte."""
    element = torch.empty((), dtype=compute_dtype).element_size()
    return sum(2 * p.numel() * element for p in model.parameters() if p.__class__.__name__ == "Params4bit")


def cache_dequantized_weights(model: torch.nn.Module, compute_dtype: torch.dtype) -> int:
    """Swap every LoRA-wrapped 4-bit base layer for its dequantised linear twin; returns how many."""
    import bitsandbytes as bnb

    swapped = 0
    for module in list(model.modules()):
        base = getattr(module, "base_layer", None)
        if isinstance(base, bnb.nn.Linear4bit):
            module.base_layer = _dequantized_linear(base, compute_dtype)
            swapped += 1
    if swapped and torch.cuda.is_available():
        torch.cuda.empty_cache()  # the 4-bit blocks are garbage now; let the allocator reuse them
    return swapped


def _dequantized_linear(layer: bnb.nn.Linear4bit, compute_dtype: torch.dtype) -> torch.nn.Linear:
    from bitsandbytes.functional import dequantize_4bit

    # bitsandbytes declares the weight as nn.Linear's Tensor; a Linear4bit holds a Params4bit, with its quant_state
    quant_state = layer.weight.quant_state  # type: ignore[attr-defined]
    weight = dequantize_4bit(layer.weight.data, quant_state).to(compute_dtype)
    linear = torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None, device="meta")
    linear.weight = torch.nn.Parameter(weight, requires_grad=False)
    if layer.bias is not None:
        linear.bias = torch.nn.Parameter(layer.bias.data.to(compute_dtype), requires_grad=False)
    return linear
