"""The local judge: both orders cancel a judge's position bias, verdicts become win/tie/loss rates and per-sample
reasons, and the base model judges without a second load."""

import json

import pytest

from studio.chat import ChatEngine
from studio.config import ConfigError, RunConfig
from studio.config.evaluation import DEFAULT_JUDGE_PROMPT as DEFAULT_PROMPT
from studio.evaluation.judge import judge
from studio.evaluation.runner import PREDICTIONS_FILE, evaluate

QUESTIONS, REFERENCES = ["2+2?", "首都？", "颜色？"], ["4", "北京", "蓝"]
BASE, ADAPTER = ["5", "上海", "蓝色"], ["4", "北京", "蓝色的"]


def test_a_judge_that_always_picks_the_first_answer_gives_only_ties():
    report = judge(
        lambda prompts: ["A\nthe first one"] * len(prompts), QUESTIONS, REFERENCES, BASE, ADAPTER, DEFAULT_PROMPT
    )
    assert [v.outcome for v in report.verdicts] == ["tie"] * 3
    assert report.rates() == {"judge_win": 0.0, "judge_tie": 100.0, "judge_loss": 0.0}


def test_a_consistent_judge_decides_in_both_orders():
    def prefers_the_reference(prompts):  # A or B: whichever answer equals the reference; TIE when neither does
        replies = []
        for prompt in prompts:
            reference = prompt.split("Reference answer (may be empty):\n")[1].split("\n")[0]
            a = prompt.split("Answer A:\n")[1].split("\n")[0]
            b = prompt.split("Answer B:\n")[1].split("\n")[0]
            replies.append("A\nmatches" if a == reference else "B\nmatches" if b == reference else "TIE\nneither")
        return replies

    report = judge(prefers_the_reference, QUESTIONS, REFERENCES, BASE, ADAPTER, DEFAULT_PROMPT)
    assert [v.outcome for v in report.verdicts] == ["win", "win", "tie"]
    assert report.verdicts[0].votes == ("B", "A") and "matches" in report.verdicts[0].reason


def test_an_answer_holding_a_field_name_is_not_filled_again():
    seen = []
    judge(lambda prompts: seen.extend(prompts) or ["TIE"] * len(prompts), ["q"], ["r"], ["{b}"], ["x"], DEFAULT_PROMPT)
    assert "Answer A:\n{b}" in seen[0]


def test_the_prompt_must_show_every_field_and_a_model_judge_needs_its_model():
    with pytest.raises(ConfigError, match=r"\{reference\}"):
        RunConfig().with_overrides({"evaluation.judge_prompt": "{question} {a} {b}"})
    with pytest.raises(ConfigError, match="judge_model"):
        RunConfig().with_overrides({"evaluation.judge": "model"})


def test_the_base_model_judges_base_against_adapter(tiny_model_dir, strong_adapter, tmp_path):
    config = RunConfig().with_overrides(
        {
            "model.name_or_path": str(tiny_model_dir),
            "quantization.method": "none",
            "evaluation.max_samples": "3",
            "evaluation.output_dir": str(tmp_path / "evals"),
            "evaluation.judge": "base",
            "evaluation.judge_max_new_tokens": "4",
            "generation.max_new_tokens": "4",
        }
    )
    engine = ChatEngine()
    report = evaluate(engine, config, str(strong_adapter), compare=True)
    assert engine.base_loads == 1  # the judge is the model already loaded
    rates = report.metrics["strong"]
    assert rates["judge_win"] + rates["judge_tie"] + rates["judge_loss"] == pytest.approx(100.0)
    assert report.metrics["base"]["judge_win"] == rates["judge_loss"]
    assert len(report.judge.verdicts) == 3 and len(report.scores["strong"]["judge"]) == 3
    line = json.loads((report.out_dir / PREDICTIONS_FILE).read_text().splitlines()[0])
    assert line["judge"]["outcome"] in ("win", "tie", "loss") and len(line["judge"]["votes"]) == 2
