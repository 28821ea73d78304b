"""How a trained adapter becomes a standalone model: a transformers folder or one GGUF file."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import field_validator

from studio.config.base import FieldProblem, Section, field

# What studio.export.gguf_types can encode and check (the gguf package's Python quantisers).
GGUF_TYPE_NAMES = ("f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0", "f32")
GgufTypeName = Literal["f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0", "f32"]
_LLAMA_CPP_ONLY = re.compile(r"^(q[2-8]_k(_[sml])?|iq\d\w*|tq\d_\d|mxfp4)$", re.IGNORECASE)


class ExportConfig(Section):
    output_dir: str = field(
        "exports/merged",
        "Folder for the merged model (created; must be empty or missing).",
    )
    format: Literal["safetensors", "gguf"] = field(
        "safetensors",
        "safetensors: a transformers model folder. gguf: one .gguf file with tokenizer and chat template, "
        "plus an Ollama Modelfile, for llama.cpp / Ollama / LM Studio.",
    )
    gguf_type: GgufTypeName = field(
        "q8_0",
        "GGUF weights: f16/bf16/f32 unquantised; q8_0 (8-bit, near lossless), q5_1/q5_0/q4_1/q4_0 (smaller, "
        "embedding and output head kept at q8_0). "
        "k-quants such as q4_k_m: export f16, then llama.cpp's llama-quantize.",
    )
    max_shard_size: str = field(
        "2GB",
        "Largest safetensors shard, e.g. 500MB or 2GB.",
        pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|KiB|MiB|GiB)$",
    )
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = field(
        "auto",
        "dtype of the merged weights; 'auto' is bf16 on a GPU and fp32 on CPU. Never 4-bit.",
    )
    check_prompts: int = field(
        3,
        "Prompts on which the reloaded export must match base+adapter logits.",
        ge=1,
        le=20,
        advanced=True,
    )

    @field_validator("gguf_type", mode="before")
    @classmethod
    def _llama_cpp_only_types(cls, value: object) -> object:
        """k-quants and i-quants have no encoder in the gguf package: say so, and how to get one."""
        if isinstance(value, str) and _LLAMA_CPP_ONLY.match(value.strip()):
            raise FieldProblem(
                "config.gguf_type_needs_llama_cpp", value=value, lower=value.lower(), upper=value.upper()
            )
        return value.lower().strip() if isinstance(value, str) else value
