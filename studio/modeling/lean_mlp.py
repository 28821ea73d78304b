"""Gated SiLU MLPs that keep two activations for the backward pass instead of four.

`down(silu(gate(x)) * up(x))` as autograd records it keeps gate(x), silu(gate(x)), up(x)
and their product until the backward pass: on a llama-shaped model the MLP holds more than
half of a layer's activations. `SiluMul` keeps only gate(x) and up(x) and recomputes
silu(gate(x)) in the backward pass, one elementwise pass over memory that is already there.
Used on CPU, where layers are not recomputed (no gradient checkpointing) and lanes hold two
micro-batches of activations at once; the losses and gradients are the same.
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F
from torch.autograd.function import FunctionCtx

# MLP classes whose forward is exactly down_proj(act_fn(gate_proj(x)) * up_proj(x))
GATED_MLPS = frozenset({"LlamaMLP", "Qwen2MLP", "Qwen3MLP", "MistralMLP", "Olmo2MLP"})
SILU = ("SiLU", "SiLUActivation")  # torch's module, transformers' own (the one its configs pick)


class SiluMul(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(gate, up)
        return F.silu(gate) * up

    # ctx untyped: torch's stubs declare its saved_tensors and needs_input_grad as 1-tuples
    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        gate, up = ctx.saved_tensors
        grad_gate = torch.ops.aten.silu_backward(grad * up, gate) if ctx.needs_input_grad[0] else None
        grad_up = grad * F.silu(gate) if ctx.needs_input_grad[1] else None
        return grad_gate, grad_up


def _lean_forward(self: Any, x: torch.Tensor) -> torch.Tensor:  # self: one of GATED_MLPS, with its three projections
    return self.down_proj(SiluMul.apply(self.gate_proj(x), self.up_proj(x)))


def use_lean_mlps(model: torch.nn.Module) -> int:
    """Switch every known gated SiLU MLP of `model` to `SiluMul`; returns how many were switched."""
    switched = 0
    for module in model.modules():
        if type(module).__name__ in GATED_MLPS and type(getattr(module, "act_fn", None)).__name__ in SILU:
            module.forward = types.MethodType(_lean_forward, module)
            switched += 1
    return switched
