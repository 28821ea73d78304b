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
    quantize_8bit: bool = False  # bitsandbytes' LLM.int8 base
    finetuning: str = "lora"  # finetuning.method: lora, oft, full, freeze
    pure_bf16: bool = False  # trained weights kept in bf16 (no fp32 master copy), as training.pure_bf16

    @property
    def autocast(self) -> bool:
        """Whether training runs under torch.autocast: matmuls in the half dtype, LoRA weights kept in fp32."""
        return self.weight_dtype != torch.float32

    @property
    def quantized(self) -> bool:
        return self.quantize_4bit or self.quantize_8bit

    @property
    def method(self) -> Message:
        """The training method for a person, shown in the UI and the started event."""
        compute, weights, device = dtype_name(self.compute_dtype), dtype_name(self.weight_dtype), self.device.upper()
        if self.finetuning == "full":
            return say("modeling.method_full", weights=weights, device=device)
        if self.finetuning == "freeze":
            return say("modeling.method_freeze", weights=weights, device=device)
        adapter = {"lora": "LoRA", "oft": "OFT"}.get(self.finetuning, self.finetuning)
        if self.quantize_4bit and self.finetuning == "lora":
            key = "modeling.method_qlora_cuda" if self.device == "cuda" else "modeling.method_qlora_cpu"
            return say(key, quant_type=self.quant_type.upper(), compute=compute)
        if self.quantized:
            return say(
                "modeling.method_quantized", adapter=adapter, bits=4 if self.quantize_4bit else 8, compute=compute
            )
        if self.finetuning == "oft":
            return say("modeling.method_oft", weights=weights, device=device)
        return say("modeling.method_lora", weights=weights, device=device)


def dtype_name(dtype: torch.dtype) -> str:
    """The config's name of a dtype (bf16, fp16, fp32)."""
    return {v: k for k, v in _DTYPES.items()}[dtype]


def resolve_plan(
    quant: QuantizationConfig, training: TrainingConfig, cuda: bool | None = None, finetuning: str = "lora"
) -> ComputePlan:
    """`finetuning`: finetuning.method; full and freeze train the weights themselves, so 'auto' quantises none."""
    cuda = torch.cuda.is_available() if cuda is None else cuda
    device = "cuda" if cuda else "cpu"
    adapter = finetuning in ("lora", "oft")
    quantize = quant.method == "4bit" or (quant.method == "auto" and cuda and adapter)
    dtype = _pick_dtype(training.precision, cuda)
    compute = dtype if quant.compute_dtype == "auto" else _DTYPES[quant.compute_dtype]
    return ComputePlan(
        device,
        quantize,
        quant.quant_type,
        quant.double_quant,
        compute,
        dtype,
        quantize_8bit=quant.method == "8bit",
        finetuning=finetuning,
        pure_bf16=training.pure_bf16 and dtype == torch.bfloat16,
    )


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
