import subprocess
import sys

from studio.cli import main


def test_config_prints_yaml_and_the_equivalent_command(capsys):
    assert main(["config", "--lora.rank", "32", "--training.learning_rate", "2e-4"]) == 0
    out = capsys.readouterr().out
    assert "rank: 32" in out and "# qlora-studio train --lora.rank 32 --training.learning_rate 0.0002" in out


def test_bad_flag_value_is_a_readable_error(capsys):
    assert main(["config", "--quantization.method", "8bit"]) == 2
    assert "quantization.method: Input should be 'auto', '4bit' or 'none'" in capsys.readouterr().err


def test_train_follows_the_run_and_runs_lists_it(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("QLORA_STUDIO_CACHE", str(tmp_path / "cache"))
    runs = tmp_path / "runs"
    command = [
        sys.executable, "-m", "studio.cli", "train", "--runs-dir", str(runs), "--name", "cli",
        "--model.name_or_path", str(tiny_model_dir), "--data.max_samples", "20", "--training.max_steps", "4",
        "--training.logging_steps", "1", "--training.eval_steps", "4",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "step 4/4" in result.stdout and "[finished]" in result.stdout
    listing = subprocess.run([sys.executable, "-m", "studio.cli", "runs", "--runs-dir", str(runs)], capture_output=True, text=True)
    assert "cli-" in listing.stdout and "finished" in listing.stdout and "4/4" in listing.stdout


def test_preview_command(capsys):
    assert main(["preview", "--rows", "1"]) == 0
    assert "alpaca_zh_demo" in capsys.readouterr().out


def test_unknown_dataset_is_a_readable_error(capsys):
    assert main(["preview", "--data.datasets", "[missing]"]) == 2
    assert "Unknown dataset 'missing'" in capsys.readouterr().err


def test_eval_prints_metrics_json_and_export_writes_a_model(tmp_path, tiny_model_dir, strong_adapter):
    import json

    common = ["--model.name_or_path", str(tiny_model_dir), "--quantization.method", "none"]
    evaluate = subprocess.run(
        [sys.executable, "-m", "studio.cli", "eval", *common, "--adapter", str(strong_adapter), "--compare",
         "--evaluation.max_samples", "2", "--evaluation.output_dir", str(tmp_path / "evals"),
         "--generation.max_new_tokens", "4", "--generation.temperature", "0"],
        capture_output=True, text=True, timeout=300,
    )
    assert evaluate.returncode == 0, evaluate.stderr
    metrics = json.loads(evaluate.stdout)
    assert set(metrics) == {"base", "strong"} and "rouge-l" in metrics["strong"]
    export = subprocess.run(
        [sys.executable, "-m", "studio.cli", "export", *common, "--adapter", str(strong_adapter), "--out", str(tmp_path / "merged")],
        capture_output=True, text=True, timeout=300,
    )
    assert export.returncode == 0, export.stderr
    assert "reload check" in export.stdout and (tmp_path / "merged" / "config.json").is_file()
