"""Evaluate & Predict of a freeze run's whole model against the base it was trained from, on one loaded base."""

import math

from studio.chat import ChatEngine
from studio.config import RunConfig
from studio.evaluation.runner import METRICS_FILE, evaluate


def test_base_and_a_freeze_run_are_two_columns_of_one_evaluation(method_runs, tiny_model_dir, tmp_path):
    run = method_runs("freeze")
    config = RunConfig().with_overrides(
        {
            "model.name_or_path": str(tiny_model_dir),
            "quantization.method": "auto",  # for a whole model: the base unquantised, wherever it runs
            "evaluation.datasets": "[identity]",
            "evaluation.max_samples": "4",
            "evaluation.batch_size": "4",
            "evaluation.output_dir": str(tmp_path / "evals"),
            "generation.temperature": "0",
            "generation.max_new_tokens": "6",
        }
    )
    engine = ChatEngine()
    report = evaluate(engine, config, str(run.model_dir), compare=True)
    assert report.columns == ["base", "freeze"] and engine.base_loads == 1 and not engine.plan.quantized
    assert all(math.isfinite(value) for column in report.columns for value in report.metrics[column].values())
    assert report.metrics["base"]["eval_loss"] != report.metrics["freeze"]["eval_loss"]
    assert report.predictions["base"] != report.predictions["freeze"]
    assert report.out_dir.parent == run.path / "evaluations" and (report.out_dir / METRICS_FILE).is_file()
    alone = evaluate(engine, config, None)  # the base alone afterwards: its answers as they were beside the run
    assert alone.predictions["base"] == report.predictions["base"]
    engine.unload()
