"""How a trained adapter becomes a standalone model folder."""

from __future__ import annotations

from typing import Literal

from studio.config.base import Section, field


class ExportConfig(Section):
    output_dir: str = field("exports/merged", "Folder for the merged model (created; must be empty or missing).", zh="导出目录")
    max_shard_size: str = field("2GB", "Largest safetensors shard, e.g. 500MB or 2GB.", zh="最大分片大小", pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|KiB|MiB|GiB)$")
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = field(
        "auto", "dtype of the merged weights; 'auto' is bf16 on a GPU and fp32 on CPU. Never 4-bit.", zh="导出精度"
    )
    check_prompts: int = field(3, "Prompts on which the reloaded export must match base+adapter logits.", zh="校验提示数", ge=1, le=20, advanced=True)
