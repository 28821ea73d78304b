"""LoftQ's start for a LoRA adapter on a 4-bit base: B·A is the best rank-r approximation of what rounding the
weights to 4 bits lost, so base + adapter starts near the original model instead of at its rounded copy.

peft's own `replace_lora_weights_loftq` computes on CUDA only and leaves the LoRA scale out of B·A; this does the
same decomposition on whatever device the weights are on, with the scale divided out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from studio.modeling.sources import ModelLoadError

_PREFIX = "base_model.model."  # peft's name for the wrapped model


def start_at_rounding_error(model: torch.nn.Module, model_path: str, adapter: str = "default") -> int:
    """Set A and B of every LoRA layer over a 4-bit weight; returns how many layers were set."""
    from bitsandbytes.functional import dequantize_4bit
    from peft.tuners.lora import LoraLayer

    originals = _weight_files(Path(model_path))
    count = 0
    for name, module in model.named_modules():
        # peft's layers typed loosely: nn.Module types their attributes as Tensor | Module
        layer: Any = module
        if not isinstance(module, LoraLayer) or adapter not in layer.lora_A:
            continue
        base = layer.get_base_layer()
        if base.weight.__class__.__name__ != "Params4bit":
            continue
        original = _read(originals, name.removeprefix(_PREFIX) + ".weight").to(base.weight.device, torch.float32)
        rounded = dequantize_4bit(base.weight.data, base.weight.quant_state).to(torch.float32)
        down, up = _best_low_rank(original - rounded, layer.r[adapter])
        lora_a, lora_b = layer.lora_A[adapter].weight, layer.lora_B[adapter].weight
        with torch.no_grad():
            lora_a.copy_(down.to(lora_a.dtype))
            lora_b.copy_((up / layer.scaling[adapter]).to(lora_b.dtype))
        count += 1
    return count


def _best_low_rank(residual: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B) with B @ A the rank-`rank` truncated SVD of `residual`, the singular values split evenly."""
    left, values, right = torch.linalg.svd(residual, full_matrices=False)
    root = values[:rank].sqrt()
    return root[:, None] * right[:rank], left[:, :rank] * root


def _weight_files(folder: Path) -> dict[str, Path]:
    """Which safetensors file holds each tensor of the model in `folder` (one file or shards)."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ModelLoadError("modeling.loftq_needs_safetensors", folder=folder)
    where: dict[str, Path] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            where.update(dict.fromkeys(handle.keys(), file))
    return where


def _read(where: dict[str, Path], key: str) -> torch.Tensor:
    from safetensors import safe_open

    with safe_open(str(where[key]), framework="pt") as handle:
        return handle.get_tensor(key)
