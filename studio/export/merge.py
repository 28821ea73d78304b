"""Merge a LoRA adapter into its base and save a standard transformers model folder, then prove it.

The base is loaded in 16-bit on a GPU (fp32 on CPU) — never merged into 4-bit weights, whose
rounding would change the model. After saving, the folder is reloaded with plain transformers
and its logits are compared with base+adapter on a few prompts; past the tolerance the export
is refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from studio.adapters import read_adapter
from studio.config import QuantizationConfig, RunConfig, TrainingConfig
from studio.errors import StudioError
from studio.export.model_card import write_model_card
from studio.text import Bilingual

TOLERANCE = {torch.float32: 1e-3, torch.bfloat16: 0.1, torch.float16: 0.05}
CHECK_PROMPTS = [
    "你好，请介绍一下你自己。",
    "What is LoRA fine-tuning?",
    "为什么天空是蓝色的？",
    "Write a haiku about cats.",
    "1+1=?",
]


class ExportError(StudioError):
    pass


@dataclass
class ExportReport:
    out_dir: Path
    dtype: str
    files: list[str]
    max_logit_diff: float
    tolerance: float
    seconds: float

    @property
    def passed(self) -> bool:
        return self.max_logit_diff <= self.tolerance


def _merge_precision(dtype: str) -> str:
    """The export's own 'auto': fp32 on CPU even where training picks bf16 there, so the merge adds no rounding."""
    return "fp32" if dtype == "auto" and not torch.cuda.is_available() else dtype


def export_merged(
    config: RunConfig, adapter_path: str, progress: Callable[[str], None] = lambda m: None
) -> ExportReport:
    started, info = time.time(), read_adapter(adapter_path)
    out_dir = prepare_out_dir(Path(config.export.output_dir))
    model, tokenizer, plan = load_with_adapter(config, info, progress)
    prompts = CHECK_PROMPTS[: config.export.check_prompts]
    reference = prompt_logits(model, tokenizer, prompts, plan.device)
    progress(Bilingual("Merging the adapter into the weights", "正在把适配器合并进权重"))
    merged = model.merge_and_unload()
    shard = config.export.max_shard_size
    progress(
        Bilingual(f"Saving to {out_dir} (shards of at most {shard})", f"正在保存到 {out_dir}（每个分片不超过 {shard}）")
    )
    merged.save_pretrained(out_dir, max_shard_size=config.export.max_shard_size.replace(" ", ""))
    tokenizer.save_pretrained(out_dir)
    del model, merged
    progress(
        Bilingual(
            "Reloading the export with plain transformers to check it", "正在用 transformers 重新加载导出结果以校验"
        )
    )
    diff = _max_diff(out_dir, tokenizer, prompts, reference, plan)
    report = ExportReport(
        out_dir,
        str(plan.weight_dtype).removeprefix("torch."),
        sorted(p.name for p in out_dir.iterdir()),
        diff,
        TOLERANCE[plan.weight_dtype],
        round(time.time() - started, 1),
    )
    write_model_card(out_dir, config, info, adapter_path, report)
    report.files = sorted(p.name for p in out_dir.iterdir())
    if not report.passed:
        (out_dir / "EXPORT_FAILED_CHECK.txt").write_text(
            f"max logit difference {diff} > tolerance {report.tolerance}\n"
        )
        raise ExportError(
            f"The merged model differs from base+adapter by {diff:.4g} (tolerance {report.tolerance}); see {out_dir}."
        )
    return report


def load_with_adapter(config: RunConfig, info, progress: Callable) -> tuple:
    """(base+adapter as a PeftModel, tokenizer, compute plan): the base unquantised, in the export's precision."""
    from studio.modeling.compute import resolve_plan
    from studio.modeling.loader import load_base_model, load_tokenizer
    from studio.modeling.sources import resolve_model_path

    plan = resolve_plan(
        QuantizationConfig(method="none"), TrainingConfig(precision=_merge_precision(config.export.dtype))
    )
    dtype = str(plan.weight_dtype).removeprefix("torch.")
    progress(
        Bilingual(
            f"Loading {config.model.name_or_path} in {dtype} (not quantised) and the adapter {info.name}",
            f"正在以 {dtype}（不量化）加载 {config.model.name_or_path} 与适配器 {info.name}",
        )
    )
    path = resolve_model_path(config.model, progress=progress)
    tokenizer = load_tokenizer(config.model, path)
    return _with_adapter(load_base_model(config.model, path, plan), info.path), tokenizer, plan


def prepare_out_dir(out_dir: Path) -> Path:
    """The export folder, created; refused when it holds anything (an export never overwrites)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir} is a file; give a folder for the export (it is created, or must be empty).")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ExportError(f"{out_dir} exists and is not empty; choose a new export folder or empty it.")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ExportError(f"Cannot create the export folder {out_dir}: {error.strerror}.") from None
    return out_dir


def _with_adapter(base, adapter_path: str):
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(base, adapter_path, is_trainable=False).eval()
    except (RuntimeError, ValueError, KeyError) as error:
        raise ExportError(f"The adapter {adapter_path} does not fit {base.config.name_or_path}: {error}") from None


@torch.inference_mode()
def prompt_logits(model, tokenizer, prompts: list[str], device: str) -> list[torch.Tensor]:
    results = []
    for prompt in prompts:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"].to(device)
        results.append(model(input_ids=ids).logits.float().cpu())
    return results


def _max_diff(out_dir: Path, tokenizer, prompts, reference, plan) -> float:
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(
        out_dir, dtype=plan.weight_dtype, device_map={"": plan.device}
    ).eval()
    again = prompt_logits(reloaded, tokenizer, prompts, plan.device)
    return max(float((a - b).abs().max()) for a, b in zip(reference, again))


def shard_sizes(out_dir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in Path(out_dir).glob("*.safetensors")}


def read_index(out_dir: Path) -> dict:
    index = Path(out_dir) / "model.safetensors.index.json"
    return json.loads(index.read_text()) if index.is_file() else {}
