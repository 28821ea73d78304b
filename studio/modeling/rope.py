"""RoPE scaling (model.rope_scaling): rotary positions stretched to a longer context, written into the model's
config before its weights load.

The factor follows LLaMA-Factory 0.9.5 (model_utils/rope.py): the pretrained context is the scaling's
original_max_position_embeddings when the model has one, else max_position_embeddings; a run whose cutoff_len is
longer scales by ceil(cutoff_len / context), a shorter one not at all, and a load without a run's data (the Chat
tab) by 2. yarn and llama3 also get the original context, llama3 its low/high frequency factors 1 and 4; the
context in the config grows by the factor.

Two differences, both for transformers 5, which keeps the parameters in `config.rope_parameters`:
- the model's rope_theta (and partial rotary factor) stay in the new parameters; LLaMA-Factory sets the old
  `rope_scaling` dict without them, and transformers then loses a theta such as Qwen's 1,000,000;
- dynamic keeps the pretrained context in the config: transformers' dynamic NTK raises the base only beyond
  max_position_embeddings, so the grown context LLaMA-Factory writes would leave every trained length unscaled.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from studio.config import ModelConfig
from studio.modeling.sources import ModelLoadError

if TYPE_CHECKING:
    from transformers import PretrainedConfig

INFERENCE_FACTOR = 2.0  # LLaMA-Factory's factor when no cutoff_len is known
LLAMA3_FREQ_FACTORS = {"low_freq_factor": 1.0, "high_freq_factor": 4.0}
_KEPT = ("rope_theta", "partial_rotary_factor", "mrope_section")  # how the model rotates, not how it scales


def apply_rope_scaling(hf_config: PretrainedConfig, model: ModelConfig, cutoff_len: int | None) -> str | None:
    """Write model.rope_scaling into `hf_config` (its text part) for a run of `cutoff_len` tokens (None: not known);
    returns a line for the log, None when scaling is off."""
    if model.rope_scaling == "none":
        return None
    text = hf_config.get_text_config()
    current = getattr(text, "rope_parameters", None)
    context = _pretrained_context(text, current)
    if not current or context is None:
        raise ModelLoadError("modeling.rope_unsupported", name=model.name_or_path, kind=model.rope_scaling)
    factor = model.rope_factor or _factor(context, cutoff_len)
    if factor is None:
        return f"RoPE not scaled: data.cutoff_len {cutoff_len} fits the pretrained context of {context} tokens."
    layers = _layer_keys(text, current)
    was = [current[key] for key in layers] if layers else [current]
    if layers:  # one dict per layer type (Gemma 3's sliding and full attention): each scaled, None (NoPE) kept
        scaled = {key: current[key] and _scaled(current[key], model.rope_scaling, factor, context) for key in layers}
        text.rope_parameters = {**current, **scaled}
    else:
        text.rope_parameters = _scaled(current, model.rope_scaling, factor, context)
    longer = math.ceil(context * factor)
    text.max_position_embeddings = context if model.rope_scaling == "dynamic" else longer
    if hasattr(text, "validate_rope"):
        text.validate_rope()
    stretched = f"{context:,} pretrained positions stretched to {longer:,}{_replacing(was)}"
    return f"RoPE scaling {model.rope_scaling} ×{factor:g}: {stretched}."


def _replacing(was: list) -> str:
    own = sorted(
        {f"{p['rope_type']} ×{p.get('factor')}" for p in was if p and p.get("rope_type", "default") != "default"}
    )
    return f" (replacing the model's own {', '.join(own)} scaling)" if own else ""


def _pretrained_context(text: PretrainedConfig, current: Any) -> int | None:
    """The scaling's original context when the model already scales (Llama 3.1's 8192), else its context."""
    if not isinstance(current, dict):
        return None
    layers = _layer_keys(text, current)
    for parameters in [current[key] for key in layers] if layers else [current]:  # None: a layer without RoPE
        if parameters and parameters.get("original_max_position_embeddings"):
            return int(parameters["original_max_position_embeddings"])
    context = getattr(text, "max_position_embeddings", None)
    return int(context) if context else None


def _layer_keys(text: PretrainedConfig, current: dict) -> list[str]:
    """The layer types whose parameters differ (Gemma 3's sliding and full attention), [] when one dict serves all."""
    nested = getattr(text, "nested_rope_parameter_keys", None)
    return list(nested(current)) if nested else []


def _factor(context: int, cutoff_len: int | None) -> float | None:
    if cutoff_len is None:
        return INFERENCE_FACTOR
    if cutoff_len <= context:
        return None
    return float(math.ceil(cutoff_len / context))


def _scaled(parameters: dict | None, kind: str, factor: float, context: int) -> dict[str, Any]:
    kept = {key: parameters[key] for key in _KEPT if parameters and key in parameters}
    scaled: dict[str, Any] = {**kept, "rope_type": kind, "factor": factor}
    if kind in ("yarn", "llama3"):
        scaled["original_max_position_embeddings"] = context
    if kind == "llama3":
        scaled.update(LLAMA3_FREQ_FACTORS)
    return scaled
