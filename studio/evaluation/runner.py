"""Evaluate & Predict: score a base model and/or adapter on the same held-out samples.

For each column (base, adapter): eval loss and perplexity over the reference answers, greedy or
sampled predictions in batches, and BLEU-4 / ROUGE against the references. Base and adapter
predictions come from the same batched generate call (mixed-adapter rows). Preference pairs,
KTO feedback and plain text are scored as their kind asks (studio/evaluation/kinds.py).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from studio.adapters import read_adapter
from studio.chat.engine import ChatEngine
from studio.config import RunConfig
from studio.evaluation import kinds
from studio.evaluation.kinds import Sample
from studio.evaluation.metrics import corpus_scores
from studio.evaluation.predict import predict
from studio.locales import Message
from studio.runs.events import EvalProgress, EvalStage
from studio.runs.folder import RunFolder

PREDICTIONS_FILE = "generated_predictions.jsonl"
METRICS_FILE = "metrics.json"


@dataclass
class EvalReport:
    out_dir: Path
    columns: list[str]  # "base" and/or the adapter's name
    metrics: dict[str, dict[str, float]]
    samples: list[Sample] = field(repr=False, default_factory=list)
    predictions: dict[str, list[str]] = field(repr=False, default_factory=dict)
    kind: str = "sft"  # of the held-out data: sft, pairwise, kto or text
    notes: list[Message] = field(default_factory=list)  # how to read the numbers (e.g. the base's rewards are 0)
    scored: int = 0  # held-out examples scored (conversations, pairs, answers or documents)


def results_dir(
    config: RunConfig, adapter_path: str | None, may_write: Callable[[Path], bool] = lambda folder: True
) -> Path:
    """A run's adapter keeps its evaluations in its run folder, when that may be written; others (and a run shared
    read-only) go to evaluation.output_dir."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(adapter_path).parent if adapter_path and Path(adapter_path).name == "adapter" else None
    in_run = run_dir is not None and (run_dir / "config.yaml").is_file() and may_write(run_dir / "evaluations")
    path = (run_dir / "evaluations" if run_dir is not None and in_run else Path(config.evaluation.output_dir)) / stamp
    path.mkdir(parents=True, exist_ok=True)
    return path


def evaluate(
    engine: ChatEngine,
    config: RunConfig,
    adapter_path: str | None = None,
    compare: bool = False,
    progress: Callable[[EvalProgress], None] = lambda event: None,
    may_write: Callable[[Path], bool] = lambda folder: True,
) -> EvalReport:
    """Load what is missing, score every column on the same samples, write the files, return the report.

    Cheap checks come first: the adapter folder and the samples, then the output folder; the model loads last.
    """
    if adapter_path:
        read_adapter(adapter_path)
    examples, source, kind = kinds.load_scored_examples(config, adapter_path)
    samples = kinds.generation_samples(examples, kind)
    folder = RunFolder(results_dir(config, adapter_path, may_write))
    if not engine.loaded or engine.model_name != config.model.name_or_path:
        engine.load(config.model, config.quantization)
    name = engine.load_adapter(adapter_path).name if adapter_path else None
    columns = ([None] if compare or name is None else []) + ([name] if name else [])
    report_progress = _Progress(folder, progress)
    if kind == "sft":
        losses = _losses(engine, samples, columns, config, report_progress)
        metrics = {
            c or "base": {
                "eval_loss": round(losses[c or "base"], 4),
                "perplexity": round(math.exp(min(losses[c or "base"], 50)), 4),
            }
            for c in columns
        }
    else:
        metrics = kinds.score(engine, examples, kind, columns, config, report_progress)
    predictions = (
        _predict(engine, samples, columns, config, report_progress) if samples else {c or "base": [] for c in columns}
    )
    if samples:
        labels = [s.label for s in samples]
        for column in columns:
            metrics[column or "base"].update(corpus_scores(predictions[column or "base"], labels))
    report = EvalReport(
        folder.path,
        [c or "base" for c in columns],
        metrics,
        samples,
        predictions,
        kind,
        kinds.notes(kind, columns),
        len(examples),
    )
    _write(report, source, adapter_path, config)
    report_progress("done", 1, 1)
    return report


def _losses(
    engine: ChatEngine,
    samples: list[Sample],
    columns: list[str | None],
    config: RunConfig,
    progress: Callable[[EvalStage, int, int], None],
) -> dict[str, float]:
    """Eval loss per column; progress counts samples scored, batch by batch, over every column."""
    losses, scored, total_rows = {}, [0], len(samples) * len(columns)
    conversations = [s.prompt + [{"role": "assistant", "content": s.label}] for s in samples]
    progress("loss", 0, total_rows)

    def on_batch(count: int) -> None:
        scored[0] += count
        progress("loss", scored[0], total_rows)

    for column in columns:
        total, count = engine.token_loss(
            conversations, column, config.data.cutoff_len, config.evaluation.batch_size, on_batch
        )
        losses[column or "base"] = total / max(1, count)
    return losses


def _predict(
    engine: ChatEngine,
    samples: list[Sample],
    columns: list[str | None],
    config: RunConfig,
    progress: Callable[[EvalStage, int, int], None],
) -> dict[str, list[str]]:
    generation = (
        config.generation if config.evaluation.sample else config.generation.model_copy(update={"temperature": 0.0})
    )
    by_column = predict(
        engine,
        [s.prompt for s in samples],
        columns,
        generation,
        config.evaluation.batch_size,
        lambda done, total: progress("predict", done, total),
    )
    return {column or "base": answers for column, answers in by_column.items()}


class _Progress:
    def __init__(self, folder: RunFolder, callback: Callable[[EvalProgress], None]):
        self.folder, self.callback, self.started = folder, callback, time.time()
        self.stage: EvalStage | None = None
        self.stage_started = self.started

    def __call__(self, stage: EvalStage, done: int, total: int) -> None:
        now = time.time()
        if stage != self.stage:
            self.stage, self.stage_started = stage, now
        elapsed = now - self.started
        rate = done / (now - self.stage_started) if done and now > self.stage_started else None
        eta = (total - done) / rate if rate else None
        event = EvalProgress(
            stage=stage,
            done=done,
            total=total,
            elapsed_s=round(elapsed, 1),
            eta_s=None if eta is None else round(eta, 1),
        )
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
        "model": config.model.name_or_path,
        "adapter": adapter_path,
        "samples": len(report.samples),
        "source": str(source),  # its English, like the notes
        "scored": report.scored,
        "kind": report.kind,
        "generation": config.generation.model_dump(),
        "greedy": not config.evaluation.sample,
        "metrics": report.metrics,
        "notes": [str(note) for note in report.notes],
    }
    (report.out_dir / METRICS_FILE).write_text(json.dumps(summary, ensure_ascii=False, indent=2))
