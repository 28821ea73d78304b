"""README.md for an exported model: what it was made from, how, and how well it did."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Protocol

from studio.adapters import AdapterInfo
from studio.config import RunConfig
from studio.runs.folder import RunFolder


class CheckedWeights(Protocol):
    """What the card says of the exported weights (merge.ExportReport and gguf_export.GgufReport both say it)."""

    dtype: str
    max_logit_diff: float
    tolerance: float


def _training_summary(adapter_path: str) -> tuple[RunConfig | None, dict]:
    """The run's own config and final numbers, when the adapter came from a run folder."""
    run = RunFolder(Path(adapter_path).parent)
    if not run.exists():
        return None, {}
    events, _ = run.read_events()
    finished = [e for e in events if e.type == "finished"]
    started = [e for e in events if e.type == "started"]
    numbers: dict[str, Any] = {"method": started[-1].method} if started else {}
    if finished:
        numbers |= {
            "steps": finished[-1].step,
            "final train loss": finished[-1].train_loss,
            "best eval loss": finished[-1].best_eval_loss,
        }
    evaluations = sorted((run.path / "evaluations").glob("*/metrics.json"))
    if evaluations:
        numbers["evaluation"] = json.loads(evaluations[-1].read_text())["metrics"]
    return run.load_config(), numbers


def write_model_card(
    out_dir: Path,
    config: RunConfig,
    info: AdapterInfo,
    adapter_path: str,
    report: CheckedWeights,
    weights: str | None = None,
    usage: list[str] | None = None,
) -> None:
    """README.md in `out_dir`; `weights` and `usage` describe a format other than the transformers folder."""
    trained_with, numbers = _training_summary(adapter_path)
    base = config.model.name_or_path  # an adapter was merged into this one; a whole model names its run's
    if info.whole_model:
        base = (trained_with.model.name_or_path if trained_with else None) or info.base_model or base
        made = f"run `{info.name}`, a {info.method} fine-tune of `{base}`"
    else:
        made = f"the {_ADAPTER.get(info.method, info.method)} adapter `{info.name}` merged into `{base}`"
    kind = "model" if info.whole_model else "merged model"
    # a vision-language model (its image processor saved beside it) loads with its own class
    pictures = (out_dir / "preprocessor_config.json").is_file()
    model_class = "AutoModelForImageTextToText" if pictures else "AutoModelForCausalLM"
    lines = [
        f"# {out_dir.name}",
        "",
        f"A {kind} exported by QLoRA Studio{' as GGUF' if usage else ''}: {made}.",
        "",
        "## Made from",
        *_made_from(base, trained_with or config, numbers),
        weights
        or f"- Exported weights: {report.dtype}; reload check: max logit difference {report.max_logit_diff:.3g} "
        f"(tolerance {report.tolerance:g})",
        "",
    ]
    if numbers:
        lines += ["## Results", "", "```json", json.dumps(numbers, ensure_ascii=False, indent=2), "```", ""]
    lines += ["## Use", ""] + (
        usage
        or [
            "```python",
            f"from transformers import {model_class}, AutoTokenizer",
            f'model = {model_class}.from_pretrained("{out_dir}")',
            f'tokenizer = AutoTokenizer.from_pretrained("{out_dir}")',
            "```",
            "",
        ]
    )
    (out_dir / "README.md").write_text("\n".join(lines), encoding="utf-8")


_ADAPTER = {"lora": "LoRA", "oft": "OFT"}  # a peft adapter's method as its card names it


def adapter_card(info: AdapterInfo, repo_id: str) -> str:
    """The Hub card of a run's result, a peft adapter or (full, freeze) a whole model: metadata the Hub reads, how
    it was trained, how to load it."""
    trained_with, numbers = _training_summary(info.path)
    base = (trained_with.model.name_or_path if trained_with else None) or info.base_model or "?"
    library = "transformers" if info.whole_model else "peft"
    front = ["---", f"library_name: {library}", f"tags: [{info.method}, qlora-studio]"]
    if re.match(r"^[\w.-]+/[\w.-]+$", base) and not Path(base).exists():  # a hub id the Hub can link to
        front.append(f"base_model: {base}")
    what = (
        f"A {info.method} fine-tune of `{base}`"
        if info.whole_model
        else f"A {_ADAPTER.get(info.method, info.method)} adapter for `{base}`"
    )
    lines = [
        *front,
        "---",
        "",
        f"# {repo_id.split('/')[-1]}",
        "",
        f"{what}, trained with QLoRA Studio (run `{info.name}`).",
        "",
    ]
    if trained_with:
        lines += ["## Made from", *_made_from(base, trained_with, numbers), ""]
    if numbers:
        lines += ["## Results", "", "```json", json.dumps(numbers, ensure_ascii=False, indent=2), "```", ""]
    return "\n".join([*lines, "## Use", "", "```python", *_loading(info, base, repo_id), "```", ""])


def _loading(info: AdapterInfo, base: str, repo_id: str) -> list[str]:
    if info.whole_model:
        return [
            "from transformers import AutoModelForCausalLM",
            f'model = AutoModelForCausalLM.from_pretrained("{repo_id}")',
        ]
    return [
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM",
        f'model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained("{base}"), "{repo_id}")',
    ]


def _method_line(source: RunConfig) -> str:
    """What finetuning.method trained: the adapter's shape, or which of the model's own weights."""
    tuning, lora = source.finetuning, source.lora
    if tuning.method == "full":
        return "- Fine-tuning: full (every weight trained)"
    if tuning.method == "freeze":
        layers = tuning.freeze_trainable_layers
        which = f"the last {layers}" if layers > 0 else f"the first {-layers}" if layers else "no"
        modules = ", ".join(tuning.freeze_trainable_modules)
        extra = f"; also {', '.join(tuning.freeze_extra_modules)}" if tuning.freeze_extra_modules else ""
        return f"- Fine-tuning: freeze ({which} decoder layers trained, modules: {modules}{extra})"
    targets = ", ".join(lora.target_modules)
    if tuning.method == "oft":
        return f"- OFT: block size {tuning.oft_block_size}, dropout {lora.dropout:g}, targets {targets}"
    return (
        f"- LoRA: rank {lora.rank}, alpha {lora.alpha:g}, dropout {lora.dropout:g}, targets {targets}"
        + (", DoRA" if lora.use_dora else "")
        + (", rsLoRA" if lora.use_rslora else "")
    )


def _made_from(base_model: str, source: RunConfig, numbers: dict) -> list[str]:
    return [
        f"- Base model: `{base_model}`",
        f"- Datasets: {', '.join(source.data.datasets)} (cutoff {source.data.cutoff_len} tokens, "
        f"{source.data.val_size:.0%} held out)",
        _method_line(source),
        f"- Trained with: {numbers.get('method') or source.quantization.method + ' quantisation'}",
        f"- Training: lr {source.training.learning_rate:g}, {source.training.num_epochs:g} epochs"
        + (f" (max {source.training.max_steps} steps)" if source.training.max_steps else "")
        + f", batch {source.training.batch_size} x accumulation {source.training.gradient_accumulation_steps}, "
        f"{source.training.lr_scheduler} schedule",
    ]
