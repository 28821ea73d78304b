"""Which engine answers in Chat, `qlora-studio chat` and the OpenAI-compatible endpoint, and vLLM's settings."""

from __future__ import annotations

from typing import Literal

from studio.config.base import Section, field


class ChatConfig(Section):
    engine: Literal["hf", "vllm"] = field(
        "hf",
        "What generates the answers: 'hf' is transformers with peft (any device; LoRA and OFT adapters, full and "
        "freeze runs, weighted combinations); 'vllm' is vLLM with its LoRA adapters (a CUDA GPU and the vllm package, "
        "pip install vllm), faster where several answers run at once. Chosen when the model is loaded.",
    )
    gpu_memory_utilization: float = field(
        0.7,
        "vLLM: the share of the GPU's memory it takes for the weights and the KV cache, whatever else runs there "
        "(a training run on the same GPU needs the rest).",
        gt=0,
        le=0.98,
        advanced=True,
    )
    max_model_len: int | None = field(
        None,
        "vLLM: the longest prompt plus answer, in tokens, that its KV cache is sized for; empty: the model's own "
        "context. A smaller one fits a smaller GPU.",
        ge=16,
        advanced=True,
    )
    max_loras: int = field(
        4,
        "vLLM: how many adapters one batch may mix (each slot reserves GPU memory); more loaded adapters take turns.",
        ge=1,
        le=64,
        advanced=True,
    )
    max_lora_rank: int = field(
        64,
        "vLLM: the largest adapter rank it serves (lora.rank of the runs you chat with); it reserves memory for the "
        "next size it offers (8, 16, 32, 64, 128, 256, 320 or 512), so larger reserves more.",
        ge=1,
        le=512,
        advanced=True,
    )
