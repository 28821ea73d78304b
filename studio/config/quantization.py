"""Whether and how the frozen base weights are quantised (the Q in QLoRA)."""

from __future__ import annotations

from typing import Literal

from studio.config.base import AutoOnOff, Section, field


class QuantizationConfig(Section):
    method: Literal["auto", "4bit", "none"] = field(
        "auto",
        "'4bit' quantises the base with bitsandbytes (QLoRA; CUDA, or bitsandbytes' CPU backend); "
        "'none' trains plain LoRA on full-precision weights; 'auto' is 4bit on CUDA and none on CPU.",
        zh="量化方式",
        zh_help="'4bit' 用 bitsandbytes 将基座量化为 4 比特（QLoRA；CUDA，或 bitsandbytes 的 CPU 后端）；'none' 在全精"
        "度权重上训练普通 LoRA；'auto' "
        "在 CUDA 上为 4bit，在 CPU 上为 none。",
    )
    quant_type: Literal["nf4", "fp4"] = field(
        "nf4", "4-bit data type.", zh="4 比特数据类型", zh_help="4 比特数据类型。"
    )
    double_quant: bool = field(
        True,
        "Quantise the quantisation constants too (saves ~0.4 bit per weight).",
        zh="双重量化",
        zh_help="对量化常数再做一次量化（每个权重约省 0.4 比特）。",
    )
    compute_dtype: Literal["auto", "bf16", "fp16", "fp32"] = field(
        "auto",
        "dtype of the dequantised matmuls; 'auto' follows training.precision.",
        zh="计算精度",
        zh_help="反量化后矩阵乘法的数据类型；'auto' 跟随 training.precision。",
        advanced=True,
    )
    cache_dequantized: AutoOnOff = field(
        "auto",
        "Train on a dequantised copy of the 4-bit weights (the same values, without dequantising at every matmul): "
        "faster steps, but the frozen weights take compute-dtype memory, about 4x their 4-bit size. "
        "'auto' is on with CUDA when that copy takes at most a quarter of the GPU's memory.",
        zh="缓存反量化权重",
        zh_help="在 4 比特权重的反量化副本上训练（数值相同，但无需每次矩阵乘法都反量化）：每步更快，但冻结权重按计算精"
        "度占用内存，约为 4 比特的 4 倍。'auto' 在 CUDA 上且副本不超过显存四分之一时开启。",
        advanced=True,
    )
