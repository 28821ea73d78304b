"""Whether and how the frozen base weights are quantised (the Q in QLoRA)."""

from __future__ import annotations

from typing import Literal

from studio.config.base import Section, field


class QuantizationConfig(Section):
    method: Literal["auto", "4bit", "none"] = field(
        "auto",
        "'4bit' quantises the base with bitsandbytes (QLoRA; CUDA, or bitsandbytes' CPU backend); "
        "'none' trains plain LoRA on full-precision weights; 'auto' is 4bit on CUDA and none on CPU.",
        zh="量化方式",
    )
    quant_type: Literal["nf4", "fp4"] = field("nf4", "4-bit data type.", zh="4 比特数据类型")
    double_quant: bool = field(
        True, "Quantise the quantisation constants too (saves ~0.4 bit per weight).", zh="双重量化"
    )
    compute_dtype: Literal["auto", "bf16", "fp16", "fp32"] = field(
        "auto",
        "dtype of the dequantised matmuls; 'auto' is bf16 where the GPU supports it, fp16 on older GPUs, fp32 on CPU.",
        zh="计算精度",
        advanced=True,
    )
