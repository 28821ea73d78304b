"""Task metrics for Predict: each rule on the edge cases a Chinese-speaking user's data has, the per-sample scores
written with the predictions, and a metric file allowed only where code may run."""

import csv
import json

import pytest

from studio.api import Studio
from studio.chat import ChatEngine
from studio.config import ConfigError, RunConfig
from studio.config.evaluation import EvaluationConfig
from studio.errors import PathNotAllowed
from studio.evaluation.runner import PREDICTIONS_CSV, PREDICTIONS_FILE, evaluate
from studio.evaluation.task_metrics import build_metrics, choice, exact_match, normalised_match, regex_rule
from studio.training.rewards import accuracy
from studio.workspace import Workspace


@pytest.mark.parametrize(
    ("prediction", "reference", "exact", "normalised"),
    [
        ("北京", "北京", 1.0, 1.0),
        ("  北京\n", "北京", 1.0, 1.0),
        ("北京。", "北京", 0.0, 1.0),  # Chinese punctuation
        ("Ｂｅｉｊｉｎｇ！", "beijing", 0.0, 1.0),  # full-width letters, case
        ("北 京", "北京", 0.0, 1.0),  # inner whitespace
        ("上海", "北京", 0.0, 0.0),
    ],
)
def test_exact_match_and_normalised_accuracy(prediction, reference, exact, normalised):
    assert exact_match("", prediction, reference) == exact
    assert normalised_match("", prediction, reference) == normalised


@pytest.mark.parametrize(
    ("prediction", "reference", "right"),
    [
        ("答案是 ４２。", "42", 1.0),  # full-width digits
        ("先算 6×7，得到 42", "42", 1.0),  # the last number counts
        ("1,024", "1024", 1.0),  # thousands separator
        ("三十七", "37", 1.0),  # Chinese numerals
        ("没有数字", "5", 0.0),
        ("42 然后 43", "42", 0.0),
    ],
)
def test_last_number(prediction, reference, right):
    assert accuracy("last_number")("", prediction, reference) == right


@pytest.mark.parametrize(
    ("prediction", "reference", "right"),
    [("B", "B", 1.0), ("答案：C。", "C", 1.0), ("(A) 北京", "A", 1.0), ("选 D", "B", 0.0), ("我不知道", "A", 0.0)],
)
def test_choice_reads_the_first_option_letter(prediction, reference, right):
    assert choice("", prediction, reference) == right


def test_regex_contains_a_match():
    rule = regex_rule(r"<answer>\d+</answer>")
    assert rule("", "思考…<answer>12</answer>", "") == 1.0 and rule("", "12", "") == 0.0


def test_a_regex_metric_needs_its_pattern_and_a_bad_pattern_is_refused():
    with pytest.raises(ConfigError, match="metric_pattern"):
        RunConfig().with_overrides({"evaluation.task_metrics": "[regex]"})
    with pytest.raises(ConfigError, match="regular expression"):
        RunConfig().with_overrides({"evaluation.metric_pattern": "(unclosed"})


def test_a_metric_file_runs_from_the_command_line_and_is_refused_from_the_browser(tmp_path):
    metric = tmp_path / "metric.py"
    metric.write_text("def metric(prompt, prediction, reference):\n    return float(len(prediction) < 10)\n")
    config = EvaluationConfig(task_metrics=["file"], metric_file=str(metric))
    assert build_metrics(config)["file"]("", "short", "") == 1.0
    run = RunConfig().with_overrides({"evaluation.task_metrics": "[file]", "evaluation.metric_file": str(metric)})
    with pytest.raises(PathNotAllowed, match="allow-remote-code"):
        Workspace.serve(tmp_path, tmp_path / "runs").check_config(run)
    Workspace.serve(tmp_path, tmp_path / "runs", allow_remote_code=True).check_config(run)


def test_predict_reports_each_metric_and_writes_every_samples_scores(tiny_model_dir, strong_adapter, tmp_path):
    config = RunConfig().with_overrides(
        {
            "model.name_or_path": str(tiny_model_dir),
            "quantization.method": "none",
            "evaluation.max_samples": "4",
            "evaluation.batch_size": "4",
            "evaluation.output_dir": str(tmp_path / "evals"),
            "evaluation.task_metrics": "[exact_match, accuracy, last_number, regex]",
            "evaluation.metric_pattern": ".",
            "generation.max_new_tokens": "6",
        }
    )
    report = evaluate(ChatEngine(), config, str(strong_adapter), compare=True)
    for column in ("base", "strong"):
        assert {"exact_match", "accuracy", "last_number", "regex", "rouge-l"} <= set(report.metrics[column])
        assert len(report.scores[column]["accuracy"]) == len(report.samples) == 4
        # the tiny model's random answers match nothing, but every one contains a character
        assert report.metrics[column]["regex"] == 100.0 and report.metrics[column]["exact_match"] == 0.0
    lines = [json.loads(line) for line in (report.out_dir / PREDICTIONS_FILE).read_text().splitlines()]
    assert (
        set(lines[0]["scores"]) == set(lines[0]["base_scores"]) == {"exact_match", "accuracy", "last_number", "regex"}
    )
    with open(report.out_dir / PREDICTIONS_CSV, encoding="utf-8-sig") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][:3] == ["prompt", "reference", "base prediction"] and "strong accuracy" in rows[0]
    assert len(rows) == 5


def test_the_browser_cannot_ask_for_a_metric_file_without_the_opt_in(tmp_path):
    studio = Studio.serving(tmp_path, tmp_path / "runs")
    config = RunConfig().with_overrides(
        {"evaluation.task_metrics": "[file]", "evaluation.metric_file": str(tmp_path / "m.py")}
    )
    with pytest.raises(PathNotAllowed, match="metric_file"):
        studio.evaluate(config, None, False)
