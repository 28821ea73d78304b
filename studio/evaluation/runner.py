"""Evaluate & Predict: score a base model and/or adapter on the same held-out samples.

For each column (base, adapter): eval loss and perplexity over the reference answers, greedy or
sampled predictions in batches, and BLEU-4 / ROUGE against the references. Base and adapter
predictions come from the same batched generate call (mixed-adapter rows).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

from studio.chat.adapters import read_adapter
from studio.chat.engine import ChatEngine
from studio.config import RunConfig
from studio.data.formats import Message
from studio.data.prepare import load_conversations, split_conversations
from studio.data.registry import DataError
from studio.evaluation.metrics import corpus_scores
from studio.evaluation.predict import predict
from studio.events import EvalProgress
from studio.run_folder import RunFolder

PREDICTIONS_FILE = "generated_predictions.jsonl"
METRICS_FILE = "metrics.json"


@dataclass
class Sample:
    prompt: list[Message]
    label: str


@dataclass
class EvalReport:
    out_dir: Path
    columns: list[str]  # "base" and/or the adapter's name
    metrics: dict[str, dict[str, float]]
    samples: list[Sample] = field(repr=False, default_factory=list)
    predictions: dict[str, list[str]] = field(repr=False, default_factory=dict)


def load_samples(config: RunConfig, adapter_path: str | None) -> tuple[list[Sample], str]:
    """The samples to evaluate on, and where they come from."""
    limit = config.evaluation.max_samples
    if config.evaluation.datasets:
        data = config.data.model_copy(update={"datasets": config.evaluation.datasets})
        conversations = [c for d in load_conversations(data) for c in d.examples]
        source = ", ".join(config.evaluation.datasets)
    elif adapter_path and (Path(adapter_path).parent / "val.jsonl").is_file():
        lines = (Path(adapter_path).parent / "val.jsonl").read_text(encoding="utf-8").splitlines()
        conversations = [json.loads(line)["messages"] for line in lines if line.strip()]
        source = "the run's validation split"
    else:
        split = split_conversations(load_conversations(config.data), config.data.val_size, config.training.seed)
        conversations, source = split.val, "the validation split of " + ", ".join(config.data.datasets)
    if not conversations:
        raise DataError(f"No samples to evaluate in {source}; name datasets in evaluation.datasets.")
    return [Sample(c[:-1], c[-1]["content"]) for c in conversations[:limit]], source


def results_dir(config: RunConfig, adapter_path: str | None) -> Path:
    """A run's adapter keeps its evaluations in its run folder; others go to evaluation.output_dir."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(adapter_path).parent if adapter_path and Path(adapter_path).name == "adapter" else None
    base = run_dir / "evaluations" if run_dir and (run_dir / "config.yaml").is_file() else Path(config.evaluation.output_dir)
    path = base / stamp
    path.mkdir(parents=True, exist_ok=True)
    return path


def evaluate(
    engine: ChatEngine,
    config: RunConfig,
    adapter_path: str | None = None,
    compare: bool = False,
    progress: Callable[[EvalProgress], None] = lambda event: None,
) -> EvalReport:
    """Load what is missing, score every column on the same samples, write the files, return the report.

    Cheap checks come first: the adapter folder and the samples, then the output folder; the model loads last.
    """
    if adapter_path:
        read_adapter(adapter_path)
    samples, source = load_samples(config, adapter_path)
    folder = RunFolder(results_dir(config, adapter_path))
    if not engine.loaded or engine.model_name != config.model.name_or_path:
        engine.load(config.model, config.quantization)
    name = engine.load_adapter(adapter_path).name if adapter_path else None
    columns = ([None] if compare or name is None else []) + ([name] if name else [])
    report_progress = _Progress(folder, progress)
    losses = _losses(engine, samples, columns, config, report_progress)
    predictions = _predict(engine, samples, columns, config, report_progress)
    labels = [s.label for s in samples]
    metrics = {}
    for column in columns:
        key = column or "base"
        loss = losses[key]
        metrics[key] = {"eval_loss": round(loss, 4), "perplexity": round(math.exp(min(loss, 50)), 4), **corpus_scores(predictions[key], labels)}
    report = EvalReport(folder.path, [c or "base" for c in columns], metrics, samples, predictions)
    _write(report, source, adapter_path, config)
    report_progress("done", 1, 1)
    return report


def _losses(engine, samples, columns, config: RunConfig, progress) -> dict[str, float]:
    """Eval loss per column; progress counts samples scored, batch by batch, over every column."""
    losses, scored, total_rows = {}, [0], len(samples) * len(columns)
    conversations = [s.prompt + [{"role": "assistant", "content": s.label}] for s in samples]
    progress("loss", 0, total_rows)

    def on_batch(count: int) -> None:
        scored[0] += count
        progress("loss", scored[0], total_rows)

    for column in columns:
        total, count = engine.token_loss(conversations, column, config.data.cutoff_len, config.evaluation.batch_size, on_batch)
        losses[column or "base"] = total / max(1, count)
    return losses


def _predict(engine, samples, columns, config: RunConfig, progress) -> dict[str, list[str]]:
    generation = config.generation if config.evaluation.sample else config.generation.model_copy(update={"temperature": 0.0})
    by_column = predict(engine, [s.prompt for s in samples], columns, generation, config.evaluation.batch_size,
                        lambda done, total: progress("predict", done, total))
    return {column or "base": answers for column, answers in by_column.items()}


class _Progress:
    def __init__(self, folder: RunFolder, callback):
        self.folder, self.callback, self.started = folder, callback, time.time()
        self.stage, self.stage_started = None, self.started

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.time()
        if stage != self.stage:
            self.stage, self.stage_started = stage, now
        elapsed = now - self.started
        rate = done / (now - self.stage_started) if done and now > self.stage_started else None
        eta = (total - done) / rate if rate else None
        event = EvalProgress(stage=stage, done=done, total=total, elapsed_s=round(elapsed, 1), eta_s=None if eta is None else round(eta, 1))
        self.folder.append(event)
        self.callback(event)


def _write(report: EvalReport, source: str, adapter_path: str | None, config: RunConfig) -> None:
    main = report.columns[-1]
    with open(report.out_dir / PREDICTIONS_FILE, "w", encoding="utf-8") as handle:
        for index, sample in enumerate(report.samples):
            line = {"prompt": sample.prompt, "label": sample.label, "prediction": report.predictions[main][index]}
            if "base" in report.predictions and main != "base":
                line["base_prediction"] = report.predictions["base"][index]
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    summary = {
        "model": config.model.name_or_path, "adapter": adapter_path, "samples": len(report.samples), "source": source,
        "generation": config.generation.model_dump(), "greedy": not config.evaluation.sample, "metrics": report.metrics,
    }
    (report.out_dir / METRICS_FILE).write_text(json.dumps(summary, ensure_ascii=False, indent=2))
