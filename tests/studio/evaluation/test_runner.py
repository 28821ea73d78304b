"""Evaluate & Predict on the tiny model: files, finite numbers, base vs adapter in one request."""

import json
import math

from studio.chat import ChatEngine
from studio.config import RunConfig
from studio.evaluation.runner import METRICS_FILE, PREDICTIONS_FILE, evaluate


def _config(tiny_model_dir, tmp_path, **overrides):
    return RunConfig().with_overrides({
        "model.name_or_path": str(tiny_model_dir), "quantization.method": "none", "data.max_samples": "30",
        "evaluation.max_samples": "5", "evaluation.batch_size": "3", "evaluation.output_dir": str(tmp_path / "evals"),
        "generation.temperature": "0", "generation.max_new_tokens": "8", **overrides,
    })


def test_compare_writes_predictions_and_metrics_for_both(tiny_model_dir, strong_adapter, tmp_path):
    events = []
    report = evaluate(ChatEngine(), _config(tiny_model_dir, tmp_path), str(strong_adapter), compare=True, progress=events.append)
    assert report.columns == ["base", "strong"]
    for column in report.columns:
        metrics = report.metrics[column]
        assert set(metrics) == {"eval_loss", "perplexity", "bleu-4", "rouge-1", "rouge-2", "rouge-l"}
        assert all(math.isfinite(v) for v in metrics.values())
    assert report.metrics["base"]["eval_loss"] != report.metrics["strong"]["eval_loss"]
    lines = (report.out_dir / PREDICTIONS_FILE).read_text(encoding="utf-8").splitlines()
    assert len(lines) == 5
    first = json.loads(lines[0])
    assert {"prompt", "label", "prediction", "base_prediction"} <= set(first)
    saved = json.loads((report.out_dir / METRICS_FILE).read_text())
    assert saved["metrics"] == report.metrics and saved["samples"] == 5
    assert events[-1].stage == "done" and {e.stage for e in events} >= {"loss", "predict"}
    assert (report.out_dir / "events.jsonl").is_file()


def test_base_alone_and_named_datasets(tiny_model_dir, tmp_path):
    config = _config(tiny_model_dir, tmp_path, **{"evaluation.datasets": "[identity]"})
    report = evaluate(ChatEngine(), config)
    assert report.columns == ["base"] and len(report.samples) == 5
    assert report.samples[0].prompt[-1]["role"] == "user"
