"""Which base model to fine-tune and how to talk to it."""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from studio.config.base import Section, field
from studio.config.names import EMBEDDED_MODEL, check_model_name

# Offered in pickers; any hub id or local folder works as well. 'auto' picks each one's chat template from its name
# (studio.modeling.chat_formats), and every preset starts from the tutorial's recipe (studio.config.recipes).
MODEL_PRESETS = (
    [EMBEDDED_MODEL]
    + [f"Qwen/Qwen1.5-{size}-Chat" for size in ("0.5B", "1.8B", "4B", "7B", "14B", "32B", "72B")]
    + [f"Qwen/Qwen2.5-{size}-Instruct" for size in ("0.5B", "1.5B", "3B", "7B", "14B")]
    + [f"Qwen/Qwen3-{size}" for size in ("0.6B", "1.7B", "4B", "8B", "14B")]
    + ["Qwen/Qwen3-4B-Instruct-2507", "Qwen/Qwen3-4B-Thinking-2507"]
    + [f"Qwen/Qwen3.5-{size}" for size in ("0.8B", "2B", "4B", "9B")]
    + ["google/gemma-3-4b-it", "google/gemma-3-12b-it", "google/gemma-4-26B-A4B-it"]
    + ["meta-llama/Llama-3.2-3B-Instruct", "meta-llama/Llama-4-Scout-17B-16E-Instruct"]
    + ["microsoft/phi-4", "microsoft/Phi-4-mini-instruct"]
    + ["mistralai/Ministral-3-8B-Instruct-2512", "mistralai/Mistral-Small-3.2-24B-Instruct-2506"]
    + ["deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"]
    + ["zai-org/GLM-4.7-Flash", "openai/gpt-oss-20b"]
    + ["HuggingFaceTB/SmolLM2-360M-Instruct", "HuggingFaceTB/SmolLM2-1.7B-Instruct"]
    + ["ibm-granite/granite-4.0-tiny-preview", "LiquidAI/LFM2.5-1.2B-Instruct"]
)


ChatTemplate = Literal[
    "auto",
    "chatml",
    "qwen",
    "qwen2.5",
    "qwen3",
    "qwen3_nothink",
    "qwen3_5",
    "qwen3_5_nothink",
    "qwen3_6",
    "llama3",
    "llama4",
    "mistral",
    "mistral_small",
    "ministral3",
    "gemma",
    "gemma3",
    "gemma4",
    "glm4",
    "glm4_moe",
    "glm4_7",
    "deepseek",
    "deepseek3",
    "deepseekr1",
    "phi4",
    "phi4_mini",
    "gpt_oss",
    "smollm2",
    "granite4",
    "lfm2",
    "olmo",
    "yi",
    "alpaca",
]


class ModelConfig(Section):
    name_or_path: str = field(
        EMBEDDED_MODEL,
        "Base model: a hub id (Qwen/Qwen1.5-1.8B-Chat), a local folder, or the embedded offline default.",
        min_length=1,
    )
    chat_template: ChatTemplate = field(
        "auto",
        "Prompt format, encoded as LLaMA-Factory's template of the same name (qwen: Qwen1.5's, default system "
        "prompt 'You are a helpful assistant.'). 'auto' picks the model family's from its name, else the "
        "tokenizer's own template.",
    )
    enable_thinking: bool = field(
        True,
        "Reasoning templates (qwen3, qwen3_5, qwen3_6, deepseekr1, glm4_moe, glm4_7, gemma4, gpt_oss): on, thoughts "
        "in the data are trained and an answer without one gets an empty thought to learn from; off, thoughts are "
        "removed and the prompt ends with an empty thought (as LLaMA-Factory's enable_thinking).",
    )
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = field(
        "auto",
        "Attention kernel; 'auto' picks SDPA where available.",
        advanced=True,
    )
    trust_remote_code: bool = field(
        False,
        "Allow custom modelling code from the model folder.",
        advanced=True,
    )

    @field_validator("name_or_path")
    @classmethod
    def _known_spelling(cls, name: str) -> str:
        return check_model_name(name)

    @property
    def is_embedded(self) -> bool:
        return self.name_or_path == EMBEDDED_MODEL
