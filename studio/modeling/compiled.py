"""torch.compile of the decoder layers, one layer at a time ("regional" compilation).

On a GPU a LoRA step of a small model is bound by launching kernels, not by running them:
eager mode launches every norm, cast, LoRA matmul and residual add from Python. Compiling
each decoder layer fuses the elementwise work and moves the launches out of Python. All
layers share one compiled graph (same code, their weights are inputs), so compilation costs
about one layer's worth, once per process; lengths are dynamic so packed rows of any length
reuse it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def compile_decoder_layers(model: torch.nn.Module) -> int:
    """Compile every decoder layer in place; returns how many."""
    import torch._dynamo

    # a layer dynamo cannot compile runs eagerly (with a warning) instead of failing the run
    torch._dynamo.config.suppress_errors = True
    # walked untyped: nn.Module types every unknown attribute as Tensor | Module, and get_decoder() is untyped anyway
    walked: Any = model
    base = walked.get_base_model() if hasattr(walked, "get_base_model") else walked
    layers = base.get_decoder().layers
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers)
