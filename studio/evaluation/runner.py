"""Evaluate & Predict: score a base model and/or adapter on the same held-out samples.

For each column (base, adapter): eval loss and perplexity over the reference answers, greedy or
sampled predictions in batches, and BLEU-4 / ROUGE against the references. Base and adapter
predictions come from the same batched generate call (mixed-adapter rows); a full or freeze run's
model answers in a call of its own on the same base (studio.chat.whole_models). Preference pairs,
KTO feedback and plain text are scored as their kind asks (studio/evaluation/kinds.py).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from studio.adapters import RESULT_FOLDERS, read_adapter
from studio.chat.engine import ChatEngine
from studio.chat.whole_models import base_quantization
from studio.config import ModelConfig, RunConfig
from studio.evaluation import kinds
from studio.evaluation.benchmarks import BENCHMARKS_FILE, BenchmarkError, BenchmarkReport, check_tasks, run_benchmarks
from studio.evaluation.judge import Ask, JudgeReport, judge
from studio.evaluation.judge_endpoint import endpoint_asker
from studio.evaluation.kinds import Sample
from studio.evaluation.metrics import corpus_scores
from studio.evaluation.predict import predict
from studio.evaluation.task_metrics import Metric, build_metrics, score_samples
from studio.locales import Message
from studio.runs.events import EvalProgress, EvalStage
from studio.runs.folder import RunFolder

PREDICTIONS_FILE = "generated_predictions.jsonl"
PREDICTIONS_CSV = "generated_predictions.csv"
METRICS_FILE = "metrics.json"


@dataclass
class EvalReport:
    out_dir: Path
    columns: list[str]  # "base" and/or the adapter's name
    metrics: dict[str, dict[str, float]]
    samples: list[Sample] = field(repr=False, default_factory=list)
    predictions: dict[str, list[str]] = field(repr=False, default_factory=dict)
    kind: str = "sft"  # of the held-out data: sft, pairwise, kto or text; benchmark: no held-out data scored
    notes: list[Message] = field(default_factory=list)  # how to read the numbers (e.g. the base's rewards are 0)
    scored: int = 0  # held-out examples scored (conversations, pairs, answers or documents)
    benchmarks: BenchmarkReport | None = None  # lm-eval's results, also folded into `metrics` row by row
    scores: dict[str, dict[str, list[float]]] = field(repr=False, default_factory=dict)  # column -> metric -> samples
    judge: JudgeReport | None = None  # the judge's verdict on every sample, for the adapter

    @property
    def prediction_files(self) -> list[Path]:
        """The predictions with their per-sample scores, as JSON lines and as CSV (nothing when none were made)."""
        return [self.out_dir / name for name in (PREDICTIONS_FILE, PREDICTIONS_CSV)] if self.samples else []


def results_dir(
    config: RunConfig, adapter_path: str | None, may_write: Callable[[Path], bool] = lambda folder: True
) -> Path:
    """A run's adapter (or whole model) keeps its evaluations in its run folder, when that may be written; others
    (and a run shared read-only) go to evaluation.output_dir."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(adapter_path).parent if adapter_path and Path(adapter_path).name in RESULT_FOLDERS else None
    in_run = run_dir is not None and (run_dir / "config.yaml").is_file() and may_write(run_dir / "evaluations")
    path = (run_dir / "evaluations" if run_dir is not None and in_run else Path(config.evaluation.output_dir)) / stamp
    path.mkdir(parents=True, exist_ok=True)
    return path


def evaluate(
    engine: ChatEngine | Callable[[], ChatEngine],
    config: RunConfig,
    adapter_path: str | None = None,
    compare: bool = False,
    progress: Callable[[EvalProgress], None] = lambda event: None,
    may_write: Callable[[Path], bool] = lambda folder: True,
) -> EvalReport:
    """Load what is missing, score every column on the same samples, write the files, return the report.

    Cheap checks come first: the adapter folder, the samples and the benchmarks' names, then the output folder;
    the model loads last. `engine` may be what gives the engine then (Studio's: a GGUF file in Chat gives way to it
    only once the cheap checks pass).
    """
    evaluation = config.evaluation
    if not evaluation.held_out and not evaluation.benchmarks:
        raise BenchmarkError("evaluation.nothing_to_evaluate")
    whole = read_adapter(adapter_path).whole_model if adapter_path else False
    examples, source, kind = (
        kinds.load_scored_examples(config, adapter_path) if evaluation.held_out else ([], "", "sft")
    )
    if evaluation.benchmarks:
        check_tasks(evaluation.benchmarks)
    task_metrics = build_metrics(evaluation) if evaluation.held_out else {}
    folder = RunFolder(results_dir(config, adapter_path, may_write))
    engine = engine if isinstance(engine, ChatEngine) else engine()
    if not engine.loaded or engine.model_name != config.model.name_or_path:
        engine.load(config.model, base_quantization(config.quantization, whole), cutoff_len=config.data.cutoff_len)
    name = engine.load_adapter(adapter_path).name if adapter_path else None
    columns = ([None] if compare or name is None else []) + ([name] if name else [])
    report_progress = _Progress(folder, progress)
    report = (
        _held_out(engine, examples, kind, columns, config, report_progress, folder, task_metrics)
        if evaluation.held_out
        else EvalReport(
            folder.path, [c or "base" for c in columns], {c or "base": {} for c in columns}, kind="benchmark"
        )
    )
    if evaluation.judge != "none" and report.samples and len(columns) == 2:
        _judge(engine, report, config, report_progress)
    if evaluation.benchmarks:
        _benchmarks(engine, report, columns, config, report_progress)
    _write(report, source, adapter_path, config)
    report_progress("done", 1, 1)
    return report


def _held_out(
    engine: ChatEngine,
    examples: list,
    kind: str,
    columns: list[str | None],
    config: RunConfig,
    report_progress: _Progress,
    folder: RunFolder,
    task_metrics: dict[str, Metric],
) -> EvalReport:
    """Eval loss (or the kind's own scores), predictions, BLEU-4/ROUGE and the task metrics of every column on the
    held-out samples."""
    samples = kinds.generation_samples(examples, kind)
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
    scores: dict[str, dict[str, list[float]]] = {}
    if samples:
        labels, prompts = [s.label for s in samples], [s.prompt[-1]["content"] for s in samples]
        for column in [c or "base" for c in columns]:
            metrics[column].update(corpus_scores(predictions[column], labels))
            scores[column] = score_samples(task_metrics, prompts, predictions[column], labels)
            metrics[column].update({name: round(100 * sum(v) / len(v), 4) for name, v in scores[column].items()})
    return EvalReport(
        folder.path,
        [c or "base" for c in columns],
        metrics,
        samples,
        predictions,
        kind,
        kinds.notes(kind, columns),
        len(examples),
        scores=scores,
    )


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


def _benchmarks(
    engine: ChatEngine, report: EvalReport, columns: list[str | None], config: RunConfig, progress: _Progress
) -> None:
    """lm-eval's results on every column, kept whole and folded into the metrics table row by row."""
    evaluation = config.evaluation
    report.benchmarks = run_benchmarks(
        engine,
        evaluation.benchmarks,
        columns,
        num_fewshot=evaluation.num_fewshot,
        limit=evaluation.benchmark_limit,
        batch_size=evaluation.batch_size,
        progress=lambda done, total: progress("benchmark", done, total),
    )
    if not evaluation.held_out:
        report.scored = sum(report.benchmarks.samples.values())
    for row in report.benchmarks.rows:
        for column, value in row.values.items():
            if value is not None:
                report.metrics[column][f"{row.alias} · {row.metric}"] = round(value, 4)


def _judge(engine: ChatEngine, report: EvalReport, config: RunConfig, progress: _Progress) -> None:
    """The judge's verdicts (judge.py) as metrics of both columns (the base's win is the adapter's loss) and as
    per-sample scores: 1 a win, 0.5 a tie, 0 a loss."""
    evaluation = config.evaluation
    base, adapter = report.columns
    with _judge_asker(engine, config, progress) as ask:
        report.judge = judge(
            ask,
            [s.prompt[-1]["content"] for s in report.samples],
            [s.label for s in report.samples],
            report.predictions[base],
            report.predictions[adapter],
            evaluation.judge_prompt,
        )
    rates = report.judge.rates()
    report.metrics[adapter].update(rates)
    report.metrics[base].update(
        {"judge_win": rates["judge_loss"], "judge_tie": rates["judge_tie"], "judge_loss": rates["judge_win"]}
    )
    points = [{"win": 1.0, "tie": 0.5, "loss": 0.0}[v.outcome] for v in report.judge.verdicts]
    report.scores.setdefault(adapter, {})["judge"] = points
    report.scores.setdefault(base, {})["judge"] = [1.0 - p for p in points]


@contextmanager
def _judge_asker(engine: ChatEngine, config: RunConfig, progress: _Progress) -> Iterator[Ask]:
    """The judge evaluation.judge names, answering greedily; a judge model loaded for it is unloaded after."""
    evaluation = config.evaluation
    report_progress = lambda done, total: progress("judge", done, total)  # noqa: E731
    if evaluation.judge == "endpoint":
        yield endpoint_asker(
            evaluation.judge_url,
            evaluation.judge_model,
            evaluation.judge_max_new_tokens,
            evaluation.batch_size,
            report_progress,
        )
        return
    generation = config.generation.model_copy(
        update={"temperature": 0.0, "max_new_tokens": evaluation.judge_max_new_tokens, "system_prompt": None}
    )
    judge_engine = engine
    if evaluation.judge == "model":
        judge_engine = ChatEngine()
        judge = ModelConfig(name_or_path=evaluation.judge_model, hub=config.model.hub)  # from the run's hub
        judge_engine.load(judge, config.quantization)

    def ask(prompts: list[str]) -> list[str]:
        conversations = [[{"role": "user", "content": text}] for text in prompts]
        return predict(judge_engine, conversations, [None], generation, evaluation.batch_size, report_progress)[None]

    try:
        yield ask
    finally:
        if judge_engine is not engine:
            judge_engine.unload()


def _write_csv(report: EvalReport) -> None:
    """The predictions as a spreadsheet opens them: prompt, reference, then per column its prediction and scores."""
    import csv

    header = ["prompt", "reference"]
    for column in report.columns:
        header += [f"{column} prediction", *(f"{column} {name}" for name in report.scores.get(column, {}))]
    with open(report.out_dir / PREDICTIONS_CSV, "w", encoding="utf-8-sig", newline="") as handle:  # BOM: Excel's UTF-8
        writer = csv.writer(handle)
        writer.writerow(header)
        for index, sample in enumerate(report.samples):
            row: list[str | float] = [sample.prompt[-1]["content"], sample.label]
            for column in report.columns:
                row.append(report.predictions[column][index])
                row += [values[index] for values in report.scores.get(column, {}).values()]
            writer.writerow(row)


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
    if report.benchmarks is not None:
        text = json.dumps(report.benchmarks.to_json(), ensure_ascii=False, indent=2, default=str)
        (report.out_dir / BENCHMARKS_FILE).write_text(text, encoding="utf-8")
    with open(report.out_dir / PREDICTIONS_FILE, "w", encoding="utf-8") as handle:
        for index, sample in enumerate(report.samples):
            line: dict[str, Any] = {
                "prompt": sample.prompt,
                "label": sample.label,
                "prediction": report.predictions[main][index],
            }
            if report.scores.get(main):
                line["scores"] = {name: values[index] for name, values in report.scores[main].items()}
            if report.judge is not None:
                verdict = report.judge.verdicts[index]
                line["judge"] = {"outcome": verdict.outcome, "votes": verdict.votes, "reason": verdict.reason}
            if "base" in report.predictions and main != "base":
                line["base_prediction"] = report.predictions["base"][index]
                if report.scores.get("base"):
                    line["base_scores"] = {name: values[index] for name, values in report.scores["base"].items()}
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    _write_csv(report)
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
        "benchmarks": report.benchmarks.tasks if report.benchmarks else [],
        "notes": [str(note) for note in report.notes],
    }
    (report.out_dir / METRICS_FILE).write_text(json.dumps(summary, ensure_ascii=False, indent=2))
