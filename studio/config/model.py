"""Which base model to fine-tune and how to talk to it."""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator, model_validator

from studio.config.base import FieldProblem, Section, field
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
    "qwen2_vl",
    "qwen3_vl",
    "qwen3_vl_nothink",
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
    rope_scaling: Literal["none", "linear", "dynamic", "yarn", "llama3"] = field(
        "none",
        "Stretch the rotary positions to train and chat beyond the model's pretrained context (LLaMA-Factory's "
        "rope_scaling): linear divides every position by the factor; dynamic (NTK) raises the RoPE base only for "
        "sequences longer than the pretrained context (LLaMA-Factory warns it may not suit fine-tuning); yarn and "
        "llama3 slow down the low frequencies and keep the high ones. Written into the model's config before loading, "
        "replacing any scaling the model has.",
        advanced=True,
    )
    rope_factor: float | None = field(
        None,
        "How many times longer the context becomes with model.rope_scaling. Empty: as LLaMA-Factory computes it, "
        "ceil(data.cutoff_len / the pretrained context) when cutoff_len is longer, else no scaling; 2 where no run's "
        "data settings are known (a base loaded in the Chat tab), as LLaMA-Factory at inference.",
        ge=1,
        advanced=True,
    )
    resize_vocab: bool = field(
        False,
        "Grow the embedding and output layers to the tokenizer when the template's stop words are tokens the model "
        "lacks (new rows start at the mean of the others plus small noise), and train both layers in full with LoRA "
        "(saved with the adapter), as LLaMA-Factory's resize_vocab. Off, a tokenizer with ids beyond the embedding "
        "is refused before training.",
        advanced=True,
    )
    image_max_pixels: int = field(
        768 * 768,
        "Vision-language models: a picture with more pixels is scaled down to this many before it becomes image "
        "tokens (LLaMA-Factory's image_max_pixels); fewer pixels, fewer tokens and less memory.",
        ge=28 * 28,
        advanced=True,
    )
    image_min_pixels: int = field(
        32 * 32,
        "Vision-language models: a smaller picture is scaled up to this many pixels (LLaMA-Factory's "
        "image_min_pixels).",
        ge=1,
        advanced=True,
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
    hub: Literal["huggingface", "modelscope"] = field(
        "huggingface",
        "Where a hub id is downloaded from: the Hugging Face hub, or ModelScope (pip install "
        "'qlora-studio[modelscope]'), which also loads datasets by their 'ms_hub_url'. Local folders and the embedded "
        "default load the same either way.",
        advanced=True,
    )

    @field_validator("name_or_path")
    @classmethod
    def _known_spelling(cls, name: str) -> str:
        return check_model_name(name)

    @model_validator(mode="after")
    def _pixels_in_order(self) -> ModelConfig:
        if self.image_min_pixels > self.image_max_pixels:
            raise FieldProblem("config.image_pixels_order")
        return self

    @model_validator(mode="after")
    def _factor_with_scaling(self) -> ModelConfig:
        if self.rope_factor is not None and self.rope_scaling == "none":
            raise FieldProblem("config.rope_factor_without_scaling")
        return self

    @property
    def is_embedded(self) -> bool:
        return self.name_or_path == EMBEDDED_MODEL
