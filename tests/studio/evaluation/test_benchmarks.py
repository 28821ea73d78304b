"""Benchmarks through lm-evaluation-harness on the tiny model: the studio's numbers are lm_eval's own, base and
adapter, the bundled task runs offline, and a task that is not there is refused by name."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from studio.chat import ChatEngine
from studio.config import RunConfig
from studio.evaluation.benchmarks import BENCHMARKS_FILE, BUNDLED_TASKS, BenchmarkError, check_tasks
from studio.evaluation.runner import evaluate

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def _config(tiny_model_dir, tmp_path, **overrides):
    return RunConfig().with_overrides(
        {
            "model.name_or_path": str(tiny_model_dir),
            "quantization.method": "none",
            "evaluation.held_out": "false",
            "evaluation.benchmarks": "[ceval_zh_demo]",
            "evaluation.num_fewshot": "2",
            "evaluation.batch_size": "8",
            "evaluation.output_dir": str(tmp_path / "evals"),
            **overrides,
        }
    )


def _lm_eval_cli(model_dir, adapter, dtype: str, out: Path) -> dict:
    """What `lm_eval run` itself reports for the model (and adapter) on the bundled task."""
    model_args = f"pretrained={model_dir},dtype={dtype}" + (f",peft={adapter}" if adapter else "")
    command = [sys.executable, "-m", "lm_eval", "run", "--model", "hf", "--model_args", model_args]
    command += ["--include_path", str(BUNDLED_TASKS / "ceval_zh_demo"), "--tasks", "ceval_zh_demo"]
    command += ["--num_fewshot", "2", "--batch_size", "8", "--device", "cpu", "--output_path", str(out)]
    subprocess.run(command, check=True, env={**os.environ, **OFFLINE}, capture_output=True, timeout=600)
    (found,) = out.rglob("results_*.json")
    return json.loads(found.read_text())["results"]


def test_the_studio_reports_what_lm_eval_prints_for_the_same_model_adapter_and_task(
    tiny_model_dir, strong_adapter, tmp_path, monkeypatch
):
    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)
    engine = ChatEngine()
    report = evaluate(engine, _config(tiny_model_dir, tmp_path), str(strong_adapter), compare=True)
    assert report.benchmarks is not None and report.columns == ["base", "strong"]
    dtype = str(engine.model.dtype).removeprefix("torch.")
    theirs = {
        "base": _lm_eval_cli(tiny_model_dir, None, dtype, tmp_path / "cli-base"),
        "strong": _lm_eval_cli(tiny_model_dir, strong_adapter, dtype, tmp_path / "cli-adapter"),
    }
    tasks = {row.task for row in report.benchmarks.rows}
    assert tasks == {"ceval_zh_demo", "ceval_zh_demo_math", "ceval_zh_demo_geography"}
    for row in report.benchmarks.rows:
        for column in report.columns:
            assert row.values[column] == pytest.approx(theirs[column][row.task][f"{row.metric},none"], abs=1e-9)
    # the adapter changed the answers: the same questions scored otherwise (else this test would prove little)
    assert any(row.values["base"] != row.values["strong"] for row in report.benchmarks.rows)
    # shown in the metrics table beside the held-out ones, and kept with the results
    assert "ceval_zh_demo › 小学数学 (elementary math) · acc" in report.metrics["strong"]
    kept = json.loads((report.out_dir / BENCHMARKS_FILE).read_text())
    assert kept["columns"] == ["base", "strong"] and kept["fewshot"]["ceval_zh_demo_math"] == 2
    assert kept["samples"]["ceval_zh_demo_math"] == 25


def test_an_unknown_task_is_refused_by_name_before_anything_loads():
    with pytest.raises(BenchmarkError, match="no_such_task"):
        check_tasks(["ceval_zh_demo", "no_such_task"])


def test_a_task_whose_data_is_on_the_unreachable_hub_is_refused_by_name(tiny_model_dir, tmp_path, monkeypatch):
    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)
    config = _config(
        tiny_model_dir, tmp_path, **{"evaluation.benchmarks": "[arc_easy]", "evaluation.benchmark_limit": "2"}
    )
    with pytest.raises(BenchmarkError, match="arc_easy") as refused:
        evaluate(ChatEngine(), config)
    assert "ceval_zh_demo" in str(refused.value)  # what does run here
