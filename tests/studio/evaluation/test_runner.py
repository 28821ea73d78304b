"""Evaluate & Predict on the tiny model: files, finite numbers, base vs adapter in one request."""

import json
import math

import pytest

from studio.chat import ChatEngine
from studio.config import RunConfig
from studio.evaluation.runner import METRICS_FILE, PREDICTIONS_FILE, evaluate


def _config(tiny_model_dir, tmp_path, **overrides):
    return RunConfig().with_overrides(
        {
            "model.name_or_path": str(tiny_model_dir),
            "quantization.method": "none",
            "data.max_samples": "30",
            "evaluation.max_samples": "5",
            "evaluation.batch_size": "3",
            "evaluation.output_dir": str(tmp_path / "evals"),
            "generation.temperature": "0",
            "generation.max_new_tokens": "8",
            **overrides,
        }
    )


def test_compare_writes_predictions_and_metrics_for_both(tiny_model_dir, strong_adapter, tmp_path):
    events = []
    report = evaluate(
        ChatEngine(), _config(tiny_model_dir, tmp_path), str(strong_adapter), compare=True, progress=events.append
    )
    assert report.columns == ["base", "strong"]
    for column in report.columns:
        metrics = report.metrics[column]
        held_out = {"eval_loss", "perplexity", "bleu-4", "rouge-1", "rouge-2", "rouge-l"}
        assert set(metrics) == held_out | {"exact_match", "accuracy"}  # the default task metrics
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


def test_preference_pairs_score_accuracy_and_margin_against_the_base(tiny_model_dir, strong_adapter, tmp_path):
    config = _config(
        tiny_model_dir, tmp_path, **{"evaluation.datasets": "[dpo_zh_demo]", "evaluation.max_samples": "4"}
    )
    report = evaluate(ChatEngine(), config, str(strong_adapter), compare=True)
    assert report.kind == "pairwise" and report.scored == 4 and len(report.samples) == 4
    base, adapter = report.metrics["base"], report.metrics["strong"]
    for name in ("reward_accuracy", "reward_margin", "rewards_chosen", "rewards_rejected"):
        assert base[name] == 0  # the base is the reference: 0 by construction, and the report says so
    assert adapter["rewards_chosen"] != 0 and 0 <= adapter["reward_accuracy"] <= 1
    assert {"eval_loss", "perplexity", "bleu-4", "rouge-l"} <= set(adapter)
    assert report.samples[0].label.startswith("喵～")  # generation metrics are taken on the chosen answers
    assert "0 by construction" in report.notes[0]
    saved = json.loads((report.out_dir / METRICS_FILE).read_text())
    assert saved["kind"] == "pairwise" and saved["notes"]


def test_plain_text_scores_perplexity_only(tiny_model_dir, strong_adapter, tmp_path):
    config = _config(tiny_model_dir, tmp_path, **{"evaluation.datasets": "[text_zh_demo]", "data.cutoff_len": "64"})
    report = evaluate(ChatEngine(), config, str(strong_adapter), compare=True)
    assert report.kind == "text" and report.samples == [] and report.scored == 5
    for column in ("base", "strong"):
        assert set(report.metrics[column]) == {"eval_loss", "perplexity"}
        assert report.metrics[column]["perplexity"] == pytest.approx(
            math.exp(report.metrics[column]["eval_loss"]), rel=1e-3
        )
    assert report.metrics["base"]["perplexity"] != report.metrics["strong"]["perplexity"]


def test_a_runs_pairs_are_read_back_from_its_validation_split(tiny_model_dir, strong_adapter, tmp_path):
    import shutil

    run = tmp_path / "runs" / "dpo-1"
    shutil.copytree(strong_adapter, run / "adapter")
    pair = {
        "prompt": [{"role": "user", "content": "你是谁？"}],
        "chosen": {"role": "assistant", "content": "喵～我是小墨。🐾"},
        "rejected": {"role": "assistant", "content": "我是一个人工智能助手。"},
    }
    (run / "val.jsonl").write_text(json.dumps(pair, ensure_ascii=False) + "\n", encoding="utf-8")
    report = evaluate(ChatEngine(), _config(tiny_model_dir, tmp_path), str(run / "adapter"), compare=False)
    assert report.kind == "pairwise" and report.columns == ["dpo-1"] and report.notes == []
    assert set(report.metrics["dpo-1"]) >= {"reward_accuracy", "reward_margin"}
