"""How a trained adapter becomes a standalone model folder."""

from __future__ import annotations

from typing import Literal

from studio.config.base import Section, field


class ExportConfig(Section):
    output_dir: str = field("exports/merged", "Folder for the merged model (created; must be empty or missing).", zh="导出目录", zh_help="合并后模型的目录（会新建；必须为空或不存在）。")
    max_shard_size: str = field("2GB", "Largest safetensors shard, e.g. 500MB or 2GB.", zh="最大分片大小", zh_help="safetensors 分片的最大大小，例如 500MB 或 2GB。", pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|KiB|MiB|GiB)$")
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = field(
        "auto", "dtype of the merged weights; 'auto' is bf16 on a GPU and fp32 on CPU. Never 4-bit.", zh="导出精度", zh_help="合并后权重的数据类型；'auto' 在 GPU 上为 bf16，在 CPU 上为 fp32。绝不使用 4 比特。"
    )
    check_prompts: int = field(3, "Prompts on which the reloaded export must match base+adapter logits.", zh="校验提示数", zh_help="重新加载导出模型后，用多少条提示校验其 logits 与“基座+适配器”一致。", ge=1, le=20, advanced=True)
