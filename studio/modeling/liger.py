"""Liger's Triton kernels (RMSNorm, SwiGLU, RoPE) on CUDA, when the liger-kernel package is installed.

They fuse the elementwise work around the matmuls: fewer kernel launches and fewer saved
activations per layer. Their fused linear cross-entropy is not used: the trainer's own
label-row cross-entropy already avoids the full logits and also skips prompt rows.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def apply_liger_kernels(model: PreTrainedModel, device: str, enabled: bool) -> str | None:
    """Patch the model in place; returns a line for the log, or None when nothing was applied."""
    if not enabled or device != "cuda" or importlib.util.find_spec("liger_kernel") is None:
        return None
    from liger_kernel.transformers import _apply_liger_kernel_to_instance
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

    model_type = getattr(model.config, "model_type", "?")
    if model_type not in MODEL_TYPE_TO_APPLY_LIGER_FN:
        return f"Liger kernels not applied: no kernels for model type {model_type}."
    try:
        _apply_liger_kernel_to_instance(
            model=model, rope=True, rms_norm=True, swiglu=True, cross_entropy=False, fused_linear_cross_entropy=False
        )
    except Exception as error:  # a model type or version Liger does not handle: train without it
        return f"Liger kernels not applied to {model_type}: {error}"
    return f"Liger kernels (RMSNorm, SwiGLU, RoPE) applied to {model_type}."
