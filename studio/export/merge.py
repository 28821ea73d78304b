"""Merge a LoRA (or OFT) adapter into its base and save a standard transformers model folder, then prove it.

The base is loaded in 16-bit on a GPU (fp32 on CPU) — never merged into 4-bit weights, whose
rounding would change the model. After saving, the folder is reloaded with plain transformers
and its logits are compared with base+adapter on a few prompts; past the tolerance the export
is refused. A full or freeze run's model has nothing to merge: it is loaded in the export's
precision and saved again (no peft involved), with the same check.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from studio.adapters import AdapterInfo, read_adapter
from studio.config import QuantizationConfig, RunConfig, TrainingConfig
from studio.config.training import Precision
from studio.errors import StudioError
from studio.export.model_card import write_model_card
from studio.locales import say

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from studio.combinations import Combination
    from studio.modeling.compute import ComputePlan
    from studio.modeling.vision import PictureProcessor

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


def _merge_precision(dtype: Precision) -> Precision:
    """The export's own 'auto': fp32 on CPU even where training picks bf16 there, so the merge adds no rounding."""
    return "fp32" if dtype == "auto" and not torch.cuda.is_available() else dtype


def export_merged(
    config: RunConfig,
    adapter_path: str,
    progress: Callable[[str], None] = lambda m: None,
    combination: Combination | None = None,
) -> ExportReport:
    """`combination`: a weighted combination of LoRA adapters (studio.combinations) merged instead of
    `adapter_path` (then its first part), made again from its parts' folders; its recipe is saved beside the model."""
    started, info = time.time(), read_adapter(adapter_path)
    out_dir = prepare_out_dir(Path(config.export.output_dir))
    model, tokenizer, plan = load_with_adapter(config, info, progress, combination)
    prompts = CHECK_PROMPTS[: config.export.check_prompts]
    pictures = picture_processor(config, info)
    reference = prompt_logits(model, tokenizer, prompts, plan.device)
    if pictures is not None:  # the vision tower and projector are checked through a prompt with a picture
        reference.append(_picture_logits(model, tokenizer, pictures, plan.device))
    merged = merge(model, progress)
    progress(say("export.saving", out_dir=out_dir, shard=config.export.max_shard_size))
    merged.save_pretrained(out_dir, max_shard_size=config.export.max_shard_size.replace(" ", ""))
    tokenizer.save_pretrained(out_dir)
    if pictures is not None:
        pictures.save(out_dir)
    del model, merged
    progress(say("export.reloading"))
    diff = _max_diff(out_dir, tokenizer, prompts, reference, plan, pictures)
    report = ExportReport(
        out_dir,
        str(plan.weight_dtype).removeprefix("torch."),
        sorted(p.name for p in out_dir.iterdir()),
        diff,
        TOLERANCE[plan.weight_dtype],
        round(time.time() - started, 1),
    )
    write_model_card(out_dir, config, info, adapter_path, report)
    write_recipe(out_dir, combination)
    report.files = sorted(p.name for p in out_dir.iterdir())
    if not report.passed:
        (out_dir / "EXPORT_FAILED_CHECK.txt").write_text(
            f"max logit difference {diff} > tolerance {report.tolerance}\n"
        )
        raise ExportError("export.merge_differs", diff=diff, tolerance=report.tolerance, out_dir=out_dir)
    return report


def load_with_adapter(
    config: RunConfig, info: AdapterInfo, progress: Callable[[str], None], combination: Combination | None = None
) -> tuple[PeftModel | PreTrainedModel, PreTrainedTokenizerBase, ComputePlan]:
    """(base+adapter as a PeftModel, tokenizer, compute plan): the base unquantised, in the export's precision; a
    full or freeze run's own model (`info.whole_model`) instead of base+adapter; base+`combination` (the only
    adapter active) where one is given."""
    from studio.modeling.compute import resolve_plan
    from studio.modeling.loader import load_base_model, load_tokenizer
    from studio.modeling.sources import resolve_model_path

    plan = resolve_plan(
        QuantizationConfig(method="none"), TrainingConfig(precision=_merge_precision(config.export.dtype))
    )
    dtype = str(plan.weight_dtype).removeprefix("torch.")
    if info.whole_model:
        return _whole_model(config, info, plan, progress)
    progress(say("export.loading", name=config.model.name_or_path, dtype=dtype, adapter=info.name))
    path = resolve_model_path(config.model, progress=progress)
    tokenizer = load_tokenizer(config.model, path)
    base = load_base_model(config.model, path, plan, tokenizer=tokenizer, cutoff_len=config.data.cutoff_len)
    if combination is not None:
        progress(say("combine.export_loading", recipe=combination.describe()))
        return _with_combination(base, combination), tokenizer, plan
    return _with_adapter(base, info.path), tokenizer, plan


def _whole_model(
    config: RunConfig, info: AdapterInfo, plan: ComputePlan, progress: Callable[[str], None]
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, ComputePlan]:
    """A full or freeze run's model and tokenizer from its own folder, in the export's precision."""
    from studio.modeling.loader import load_base_model, load_tokenizer

    dtype = str(plan.weight_dtype).removeprefix("torch.")
    progress(say("export.loading_whole", name=info.name, method=info.method, dtype=dtype))
    # its config.json is as the run trained it: RoPE already scaled where the run scaled it
    as_trained = config.model.model_copy(update={"rope_scaling": "none"})
    tokenizer = load_tokenizer(as_trained, info.path)
    return load_base_model(as_trained, info.path, plan, tokenizer=tokenizer).eval(), tokenizer, plan


def merge(model: PeftModel | PreTrainedModel, progress: Callable[[str], None]) -> PreTrainedModel:
    """The adapter merged into the base weights; a whole model (a full or freeze run's) has none to merge."""
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        return model
    progress(say("export.merging"))
    return model.merge_and_unload()


def prepare_out_dir(out_dir: Path) -> Path:
    """The export folder, created; refused when it holds anything (an export never overwrites)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError("export.out_dir_is_file", out_dir=out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ExportError("export.out_dir_not_empty", out_dir=out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ExportError("export.out_dir_uncreatable", out_dir=out_dir, reason=error.strerror) from None
    return out_dir


def _with_combination(base: PreTrainedModel, combination: Combination) -> PeftModel:
    """The combination's parts loaded under their names, the combination made of them as Chat made it, and the
    parts deleted again: merge_and_unload merges the active adapter, and only the combination is left."""
    from studio.combinations import add_combination

    first, *rest = combination.parts
    model = _with_adapter(base, first.path, first.name)
    for part in rest:
        try:
            model.load_adapter(part.path, adapter_name=part.name, is_trainable=False)
        except (RuntimeError, ValueError, KeyError) as error:
            raise ExportError(
                "export.adapter_does_not_fit", adapter=part.path, base=base.config.name_or_path, error=error
            ) from None
    add_combination(model, combination)
    model.set_adapter(combination.name)
    for part in combination.parts:
        model.delete_adapter(part.name)
    return model.eval()


def write_recipe(out_dir: Path, combination: Combination | None) -> None:
    """studio_combination.json beside a merged combination: which adapters, weights and type made it."""
    if combination is not None:
        recipe = json.dumps(combination.recipe(), ensure_ascii=False, indent=2)
        (out_dir / "studio_combination.json").write_text(recipe + "\n", encoding="utf-8")
        card = out_dir / "README.md"
        if card.is_file():  # the card names the first part: say what was merged in fact
            made = f"\n## Combination\n\nMerged: `{combination.describe()}`, peft's add_weighted_adapter; recipe in "
            card.write_text(card.read_text(encoding="utf-8") + made + "studio_combination.json.\n", encoding="utf-8")


def _with_adapter(base: PreTrainedModel, adapter_path: str, name: str = "default") -> PeftModel:
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(base, adapter_path, adapter_name=name, is_trainable=False).eval()
    except (RuntimeError, ValueError, KeyError) as error:
        raise ExportError(
            "export.adapter_does_not_fit", adapter=adapter_path, base=base.config.name_or_path, error=error
        ) from None


@torch.inference_mode()
def prompt_logits(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, prompts: list[str], device: str
) -> list[torch.Tensor]:
    results = []
    for prompt in prompts:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"].to(device)
        results.append(model(input_ids=ids).logits.float().cpu())
    return results


def picture_processor(config: RunConfig, info: AdapterInfo) -> PictureProcessor | None:
    """The image processor and pixel bounds of a vision-language base (the processor is saved with the export), or
    None for a text model."""
    from studio.modeling.sources import resolve_model_path
    from studio.modeling.vision import PictureProcessor

    return PictureProcessor.of(config.model, info.path if info.whole_model else resolve_model_path(config.model))


@torch.inference_mode()
def _picture_logits(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, pictures: PictureProcessor, device: str
) -> torch.Tensor:
    from studio.modeling.vision import check_picture, picture_prompt

    inputs = picture_prompt(tokenizer, pictures.processor, CHECK_PROMPTS[0], check_picture(), pictures.pixels)
    return model(**{k: v.to(device) for k, v in inputs.items()}).logits.float().cpu()


def _max_diff(
    out_dir: Path,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    reference: list[torch.Tensor],
    plan: ComputePlan,
    pictures: PictureProcessor | None = None,
) -> float:
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    model_class = AutoModelForCausalLM if pictures is None else AutoModelForImageTextToText
    reloaded = model_class.from_pretrained(out_dir, dtype=plan.weight_dtype, device_map={"": plan.device}).eval()
    again = prompt_logits(reloaded, tokenizer, prompts, plan.device)
    if pictures is not None:
        again.append(_picture_logits(reloaded, tokenizer, pictures, plan.device))
    return max(float((a - b).abs().max()) for a, b in zip(reference, again))


def shard_sizes(out_dir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in Path(out_dir).glob("*.safetensors")}


def read_index(out_dir: Path) -> dict:
    index = Path(out_dir) / "model.safetensors.index.json"
    return json.loads(index.read_text()) if index.is_file() else {}
