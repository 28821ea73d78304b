"""Which transformers models become which llama.cpp architecture: tensor names, layout, hyperparameters.

Two architectures cover the studio's models: `llama` (Llama 2/3, SmolLM2 and the embedded default)
and `qwen2` (Qwen1.5, Qwen2, Qwen2.5: same blocks plus q/k/v biases). Anything else is refused by
name before any work is done, with what to use instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from studio.errors import StudioError
from studio.locales import Joined, Message, say

if TYPE_CHECKING:
    from gguf import GGUFWriter
    from transformers import PreTrainedConfig


class GgufUnsupported(StudioError):
    """A model this exporter does not write (the message says why and what to do instead)."""


@dataclass(frozen=True)
class Architecture:
    name: str  # llama.cpp's general.architecture
    # llama.cpp's `llama` applies rope to interleaved pairs of each head's dimensions, transformers to its two
    # halves: the rows of Q and K are reordered so both compute the same thing. qwen2 uses llama.cpp's
    # NEOX rope, which pairs halves like transformers, so its rows stay as they are.
    interleave_qk: bool


ARCHITECTURES = {
    "llama": Architecture("llama", interleave_qk=True),
    "qwen2": Architecture("qwen2", interleave_qk=False),
}

_TOP = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}
_BLOCK = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")


def architecture_of(config: PreTrainedConfig) -> Architecture:
    """The llama.cpp architecture for a transformers config; GgufUnsupported naming what stands in the way."""
    model_type = getattr(config, "model_type", "?")
    if getattr(config, "vision_config", None) is not None:  # its pictures' half belongs in a second file
        raise GgufUnsupported("modeling.gguf_vision_model", model_type=model_type)
    arch = ARCHITECTURES.get(model_type)
    if arch is None:
        raise GgufUnsupported(
            "modeling.gguf_model_type", model_type=model_type, elsewhere=say("modeling.gguf_elsewhere")
        )
    problems = _unsupported_features(config, arch)
    if problems:
        listed = Joined("list.separator", problems)
        raise GgufUnsupported(
            "modeling.gguf_features", model_type=model_type, problems=listed, elsewhere=say("modeling.gguf_elsewhere")
        )
    return arch


def _unsupported_features(config: PreTrainedConfig, arch: Architecture) -> list[Message]:
    """What the file (or transformers' GGUF reader, which checks the export) would not reproduce."""
    problems = []
    rope = rope_parameters(config)
    if rope.get("rope_type", "default") != "default":
        problems.append(say("modeling.gguf_rope_scaling", rope_type=rope["rope_type"]))
    if arch.name == "llama" and (getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False)):
        problems.append(say("modeling.gguf_biases"))
    if arch.name == "qwen2" and getattr(config, "use_sliding_window", False):
        problems.append(say("modeling.gguf_sliding_window"))
    if arch.name == "qwen2" and head_dim(config) != config.hidden_size // config.num_attention_heads:
        problems.append(say("modeling.gguf_head_size"))
    return problems


def rope_parameters(config: PreTrainedConfig) -> dict:
    """transformers 5 keeps rope settings in `rope_parameters`; older configs had `rope_theta`/`rope_scaling`."""
    rope = dict(getattr(config, "rope_parameters", None) or {})
    if "rope_theta" not in rope:
        rope["rope_theta"] = getattr(config, "rope_theta", 10000.0)
    scaling = getattr(config, "rope_scaling", None)
    if scaling and "rope_type" not in rope:
        rope["rope_type"] = scaling.get("rope_type") or scaling.get("type", "default")
    return rope


def head_dim(config: PreTrainedConfig) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def tensor_name(hf_name: str, tied: bool) -> str | None:
    """llama.cpp's name for a transformers parameter; None for one the file leaves out (a tied output head)."""
    base, suffix = hf_name.rsplit(".", 1)
    if base == "lm_head" and tied:
        return None
    if base in _TOP:
        return f"{_TOP[base]}.{suffix}"
    match = _LAYER.match(base)
    if match and match.group(2) in _BLOCK:
        return f"blk.{match.group(1)}.{_BLOCK[match.group(2)]}.{suffix}"
    raise GgufUnsupported("modeling.gguf_unknown_tensor", name=hf_name, elsewhere=say("modeling.gguf_elsewhere"))


def to_file_layout(gguf_name: str, values: np.ndarray, arch: Architecture, config: PreTrainedConfig) -> np.ndarray:
    """The tensor as the architecture stores it: Q and K rows interleaved for llama (see Architecture)."""
    if not arch.interleave_qk:
        return values
    if ".attn_q." in gguf_name:
        return _interleave_heads(values, config.num_attention_heads)
    if ".attn_k." in gguf_name:
        return _interleave_heads(values, config.num_key_value_heads)
    return values


def _interleave_heads(values: np.ndarray, heads: int) -> np.ndarray:
    """Per head, rows [x0..x(d/2-1), y0..y(d/2-1)] become [x0, y0, x1, y1, ...]."""
    rest = values.shape[1:]
    split = values.reshape(heads, 2, values.shape[0] // heads // 2, *rest)
    return np.ascontiguousarray(split.swapaxes(1, 2).reshape(values.shape))


def write_hyperparameters(writer: GGUFWriter, config: PreTrainedConfig, arch: Architecture) -> None:
    """The `<arch>.*` keys llama.cpp (and transformers' GGUF reader) build the model from."""
    writer.add_context_length(int(config.max_position_embeddings))
    writer.add_embedding_length(int(config.hidden_size))
    writer.add_block_count(int(config.num_hidden_layers))
    writer.add_feed_forward_length(int(config.intermediate_size))
    writer.add_head_count(int(config.num_attention_heads))
    writer.add_head_count_kv(int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads))
    writer.add_rope_freq_base(float(rope_parameters(config)["rope_theta"]))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_rope_dimension_count(head_dim(config))
    if head_dim(config) != config.hidden_size // config.num_attention_heads:
        writer.add_key_length(head_dim(config))
        writer.add_value_length(head_dim(config))
    writer.add_vocab_size(int(config.vocab_size))
