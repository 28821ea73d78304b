"""How a trained adapter becomes a standalone model: a transformers folder or one GGUF file."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import field_validator

from studio.config.base import Section, field

# What studio.export.gguf_types can encode and check (the gguf package's Python quantisers).
GGUF_TYPE_NAMES = ("f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0", "f32")
GgufTypeName = Literal["f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0", "f32"]
_LLAMA_CPP_ONLY = re.compile(r"^(q[2-8]_k(_[sml])?|iq\d\w*|tq\d_\d|mxfp4)$", re.IGNORECASE)


class ExportConfig(Section):
    output_dir: str = field(
        "exports/merged",
        "Folder for the merged model (created; must be empty or missing).",
        zh="导出目录",
        zh_help="合并后模型的目录（会新建；必须为空或不存在）。",
    )
    format: Literal["safetensors", "gguf"] = field(
        "safetensors",
        "safetensors: a transformers model folder. gguf: one .gguf file with tokenizer and chat template, "
        "plus an Ollama Modelfile, for llama.cpp / Ollama / LM Studio.",
        zh="导出格式",
        zh_help="safetensors：transformers 模型目录。gguf：单个 .gguf 文件（内含分词器与对话模板）及 Ollama "
        "Modelfile，可用于 llama.cpp / Ollama / "
        "LM Studio。",
    )
    gguf_type: GgufTypeName = field(
        "q8_0",
        "GGUF weights: f16/bf16/f32 unquantised; q8_0 (8-bit, near lossless), q5_1/q5_0/q4_1/q4_0 (smaller, "
        "embedding and output head kept at q8_0). "
        "k-quants such as q4_k_m: export f16, then llama.cpp's llama-quantize.",
        zh="GGUF 类型",
        zh_help="GGUF 权重类型：f16/bf16/f32 不量化；q8_0（8 位，几乎无损）；q5_1/q5_0/q4_1/q4_0 更小（词向量与输出层"
        "保持 q8_0）。"
        "q4_k_m 等 k-quant：先导出 f16，再用 llama.cpp 的 llama-quantize 量化。",
    )
    max_shard_size: str = field(
        "2GB",
        "Largest safetensors shard, e.g. 500MB or 2GB.",
        zh="最大分片大小",
        zh_help="safetensors 分片的最大大小，例如 500MB 或 2GB。",
        pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|KiB|MiB|GiB)$",
    )
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = field(
        "auto",
        "dtype of the merged weights; 'auto' is bf16 on a GPU and fp32 on CPU. Never 4-bit.",
        zh="导出精度",
        zh_help="合并后权重的数据类型；'auto' 在 GPU 上为 bf16，在 CPU 上为 fp32。绝不使用 4 比特。",
    )
    check_prompts: int = field(
        3,
        "Prompts on which the reloaded export must match base+adapter logits.",
        zh="校验提示数",
        zh_help="重新加载导出模型后，用多少条提示校验其 logits 与“基座+适配器”一致。",
        ge=1,
        le=20,
        advanced=True,
    )

    @field_validator("gguf_type", mode="before")
    @classmethod
    def _llama_cpp_only_types(cls, value):
        """k-quants and i-quants have no encoder in the gguf package: say so, and how to get one."""
        if isinstance(value, str) and _LLAMA_CPP_ONLY.match(value.strip()):
            raise ValueError(
                f"{value} is written only by llama.cpp's own quantiser (the gguf package has no encoder for it). "
                f"Export f16 here, then run: llama-quantize MODEL-f16.gguf MODEL-{value.lower()}.gguf {value.upper()}"
            )
        return value.lower().strip() if isinstance(value, str) else value
