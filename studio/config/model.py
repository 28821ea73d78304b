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
        zh="模型名称或路径",
        zh_help="基座模型：Hugging Face 模型 ID（如 Qwen/Qwen1.5-1.8B-Chat）、本地目录，或内置的离线默认模型。",
        min_length=1,
    )
    chat_template: ChatTemplate = field(
        "auto",
        "Prompt format, encoded as LLaMA-Factory's template of the same name (qwen: Qwen1.5's, default system "
        "prompt 'You are a helpful assistant.'). 'auto' picks the model family's from its name, else the "
        "tokenizer's own template.",
        zh="对话模板",
        zh_help="提示词格式，与 LLaMA-Factory 同名模板的编码一致（qwen 为 Qwen1.5 的模板，默认系统提示词为 'You are a "
        "helpful assistant.'）。'auto' "
        "根据模型名称选择所属系列的模板，否则使用分词器自带的模板。",
    )
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = field(
        "auto",
        "Attention kernel; 'auto' picks SDPA where available.",
        zh="注意力实现",
        zh_help="注意力实现；'auto' 在可用时使用 SDPA。",
        advanced=True,
    )
    trust_remote_code: bool = field(
        False,
        "Allow custom modelling code from the model folder.",
        zh="信任远程代码",
        zh_help="允许执行模型目录中的自定义建模代码。",
        advanced=True,
    )

    @field_validator("name_or_path")
    @classmethod
    def _known_spelling(cls, name: str) -> str:
        return check_model_name(name)

    @property
    def is_embedded(self) -> bool:
        return self.name_or_path == EMBEDDED_MODEL
