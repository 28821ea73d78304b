"""Which base model to fine-tune and how to talk to it."""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from studio.config.base import Section, field
from studio.config.names import EMBEDDED_MODEL, check_model_name

# Offered in pickers; any hub id or local folder works as well.
MODEL_PRESETS = (
    [EMBEDDED_MODEL]
    + [f"Qwen/Qwen1.5-{size}-Chat" for size in ("0.5B", "1.8B", "4B", "7B", "14B", "32B", "72B")]
    + [f"Qwen/Qwen2.5-{size}-Instruct" for size in ("0.5B", "1.5B", "3B", "7B", "14B")]
)


ChatTemplate = Literal[
    "auto", "chatml", "qwen", "qwen2.5", "llama3", "mistral", "gemma", "glm4", "deepseek", "yi", "alpaca"
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
