"""Whether and how the frozen base weights are quantised (the Q in QLoRA)."""

from __future__ import annotations

from typing import Literal

from studio.config.base import AutoOnOff, Section, field


class QuantizationConfig(Section):
    method: Literal["auto", "4bit", "8bit", "none"] = field(
        "auto",
        "'4bit' quantises the base with bitsandbytes (QLoRA; CUDA, or bitsandbytes' CPU backend); '8bit' with "
        "bitsandbytes' LLM.int8 (about twice the memory of 4bit, closer to the original weights); "
        "'none' trains plain LoRA on full-precision weights; 'auto' is 4bit on CUDA and none on CPU. Only LoRA and OFT "
        "train on a quantised base (full and freeze: auto means none).",
    )
    quant_type: Literal["nf4", "fp4"] = field("nf4", "4-bit data type.")
    double_quant: bool = field(
        True,
        "Quantise the quantisation constants too (saves ~0.4 bit per weight).",
    )
    compute_dtype: Literal["auto", "bf16", "fp16", "fp32"] = field(
        "auto",
        "dtype of the dequantised matmuls; 'auto' follows training.precision.",
        advanced=True,
    )
    cache_dequantized: AutoOnOff = field(
        "auto",
        "Train on a dequantised copy of the 4-bit weights (the same values, without dequantising at every matmul): "
        "faster steps, but the frozen weights take compute-dtype memory, about 4x their 4-bit size. "
        "'auto' is on with CUDA when that copy takes at most a quarter of the GPU's memory.",
        advanced=True,
    )
