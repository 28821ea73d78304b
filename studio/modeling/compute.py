"""Deciding where and how a run computes: device, quantisation and dtypes, with a line that says so."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from studio.config import QuantizationConfig, TrainingConfig
from studio.locales import Message, say

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass(frozen=True)
class ComputePlan:
    device: str  # "cuda" or "cpu"
    quantize_4bit: bool
    quant_type: str
    double_quant: bool
    compute_dtype: torch.dtype  # of the (dequantised) matmuls
    weight_dtype: torch.dtype  # of the frozen weights that are not quantised

    @property
    def autocast(self) -> bool:
        """Whether training runs under torch.autocast: matmuls in the half dtype, LoRA weights kept in fp32."""
        return self.weight_dtype != torch.float32

    @property
    def method(self) -> Message:
        """The training method for a person, shown in the UI and the started event."""
        if self.quantize_4bit:
            key = "modeling.method_qlora_cuda" if self.device == "cuda" else "modeling.method_qlora_cpu"
            return say(key, quant_type=self.quant_type.upper(), compute=dtype_name(self.compute_dtype))
        return say("modeling.method_lora", weights=dtype_name(self.weight_dtype), device=self.device.upper())


def dtype_name(dtype: torch.dtype) -> str:
    """The config's name of a dtype (bf16, fp16, fp32)."""
    return {v: k for k, v in _DTYPES.items()}[dtype]


def resolve_plan(quant: QuantizationConfig, training: TrainingConfig, cuda: bool | None = None) -> ComputePlan:
    cuda = torch.cuda.is_available() if cuda is None else cuda
    device = "cuda" if cuda else "cpu"
    quantize = quant.method == "4bit" or (quant.method == "auto" and cuda)
    dtype = _pick_dtype(training.precision, cuda)
    compute = dtype if quant.compute_dtype == "auto" else _DTYPES[quant.compute_dtype]
    return ComputePlan(device, quantize, quant.quant_type, quant.double_quant, compute, dtype)


def _pick_dtype(choice: str, cuda: bool) -> torch.dtype:
    if choice != "auto":
        return _DTYPES[choice]
    if not cuda:
        # bf16 is what the recipe trains in; a CPU without bf16 instructions would emulate it, slower than fp32
        return torch.bfloat16 if cpu_computes_bf16() else torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def cpu_computes_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX): there bf16 matmuls run about
    twice as fast as fp32 ones (bench/cpu_matmul.py; docs/benchmarks.md)."""
    probes = (getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return any(probe() for probe in probes if probe is not None)
