import json
import os
import re
import subprocess
import sys

import pytest

from studio.cli import main
from studio.processes import is_alive


def test_config_prints_yaml_and_the_equivalent_command(capsys):
    assert main(["config", "--lora.rank", "32", "--training.learning_rate", "2e-4"]) == 0
    out = capsys.readouterr().out
    assert "rank: 32" in out and "# qlora-studio train --lora.rank 32 --training.learning_rate 0.0002" in out


def test_bad_flag_value_is_a_readable_error(capsys):
    assert main(["config", "--quantization.method", "16bit"]) == 2
    assert "quantization.method: Input should be 'auto', '4bit', '8bit' or 'none'" in capsys.readouterr().err


def test_train_follows_the_run_and_runs_lists_it(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("QLORA_STUDIO_CACHE", str(tmp_path / "cache"))
    runs = tmp_path / "runs"
    command = [
        sys.executable,
        "-m",
        "studio.cli",
        "train",
        "--runs-dir",
        str(runs),
        "--name",
        "cli",
        "--model.name_or_path",
        str(tiny_model_dir),
        "--data.max_samples",
        "20",
        "--training.max_steps",
        "4",
        "--training.logging_steps",
        "1",
        "--training.eval_steps",
        "4",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "step 4/4" in result.stdout and "[finished]" in result.stdout
    listing = subprocess.run(
        [sys.executable, "-m", "studio.cli", "runs", "--runs-dir", str(runs)], capture_output=True, text=True
    )
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
        [
            sys.executable,
            "-m",
            "studio.cli",
            "eval",
            *common,
            "--adapter",
            str(strong_adapter),
            "--compare",
            "--evaluation.max_samples",
            "2",
            "--evaluation.output_dir",
            str(tmp_path / "evals"),
            "--generation.max_new_tokens",
            "4",
            "--generation.temperature",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert evaluate.returncode == 0, evaluate.stderr
    metrics = json.loads(evaluate.stdout)
    assert set(metrics) == {"base", "strong"} and "rouge-l" in metrics["strong"]
    export = subprocess.run(
        [
            sys.executable,
            "-m",
            "studio.cli",
            "export",
            *common,
            "--adapter",
            str(strong_adapter),
            "--out",
            str(tmp_path / "merged"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert export.returncode == 0, export.stderr
    assert "reload check" in export.stdout and (tmp_path / "merged" / "config.json").is_file()


def _cli(*args, timeout=120, env=None):
    import os

    return subprocess.run(
        [sys.executable, "-m", "studio.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_a_negative_number_is_a_value_and_the_error_is_short(capsys):
    assert main(["config", "--training.learning_rate", "-1e-3"]) == 2
    err = capsys.readouterr().err
    assert "training.learning_rate: Input should be greater than 0 (got '-1e-3')" in err and len(err.splitlines()) <= 3


def test_an_unknown_hub_id_is_refused_before_a_run_folder_exists(tmp_path):
    result = _cli(
        "train",
        "--runs-dir",
        str(tmp_path / "runs"),
        "--model.name_or_path",
        "nobody-here/no-such-model",
        env={"QLORA_STUDIO_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "0"},
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "nobody-here/no-such-model" in result.stderr and not (tmp_path / "runs").exists()


def test_a_bad_adapter_is_refused_before_any_model_loads(tmp_path, tiny_model_dir):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text('{"r": 8,')
    (tmp_path / "adapter" / "adapter_model.safetensors").write_bytes(b"")
    chat = _cli(
        "chat", "--model.name_or_path", str(tiny_model_dir), "--adapter", str(tmp_path / "adapter"), "--prompt", "hi"
    )
    assert chat.returncode == 2 and "adapter_config.json line 1" in chat.stderr and "Loaded" not in chat.stderr
    export = _cli("export", "--model.name_or_path", str(tiny_model_dir), "--adapter", str(tmp_path / "adapter"))
    assert export.returncode == 2 and "adapter_config.json line 1" in export.stderr


def test_export_to_an_existing_file_is_a_one_line_error(tmp_path, tiny_model_dir, strong_adapter):
    (tmp_path / "taken").write_text("not a folder")
    result = _cli(
        "export",
        "--model.name_or_path",
        str(tiny_model_dir),
        "--adapter",
        str(strong_adapter),
        "--out",
        str(tmp_path / "taken"),
    )
    assert result.returncode == 2 and "is a file" in result.stderr and "Traceback" not in result.stderr


# Runs `qlora-studio train` with Ctrl-C pressed (SIGINT sent to itself) at one named point of its start.
CTRL_C_DRIVER = """
import os, signal, sys
from studio import cli
from studio.control import service

point, argv = sys.argv[1], sys.argv[2:]
press = lambda: os.kill(os.getpid(), signal.SIGINT)

def swallowed():  # as library code with a bare except would do
    try:
        press()
    except KeyboardInterrupt:
        pass

def after(owner, name, then):
    original = getattr(owner, name)
    def wrapped(*args, **kwargs):
        result = original(*args, **kwargs)
        then(args[0])
        return result
    setattr(owner, name, wrapped)

def pid_then_press(svc):
    [child] = svc._children.values()
    print(f"worker pid {child.pid}", file=sys.stderr, flush=True)
    press()

if point == "checks":  # while the config, model and data are checked
    service.validate_run = lambda *args, check=service.validate_run: (check(*args), press())
elif point == "checks-swallowed":
    service.validate_run = lambda *args, check=service.validate_run: (check(*args), swallowed())
elif point == "spawned":  # the worker process exists; start() has not returned
    after(service.TrainingService, "_spawn", pid_then_press)
elif point == "started":  # start() returned; the command has not begun to follow
    after(service.TrainingService, "start", lambda svc: press())
elif point == "following":  # at the first read of the run's events
    calls = []
    after(service.TrainingService, "read_events", lambda svc: calls.append(1) or (len(calls) == 1 and press()))
sys.exit(cli.main(argv))
"""


def _train_with_ctrl_c_at(point: str, tmp_path, tiny_model_dir):
    runs = tmp_path / f"runs-{point}"
    command = [sys.executable, "-c", CTRL_C_DRIVER, point, "train", "--runs-dir", str(runs)]
    command += ["--model.name_or_path", str(tiny_model_dir), "--training.max_steps", "100000"]
    env = {**os.environ, "QLORA_STUDIO_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    return result, runs


@pytest.mark.parametrize("point", ["checks", "checks-swallowed", "spawned"])
def test_ctrl_c_before_the_run_exists_ends_the_command_with_nothing_left(point, tmp_path, tiny_model_dir):
    result, runs = _train_with_ctrl_c_at(point, tmp_path, tiny_model_dir)
    assert result.returncode == 130 and "Interrupted." in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "Started run" not in result.stdout
    assert not runs.exists() or not any(runs.iterdir())  # no run folder is left behind
    for pid in re.findall(r"worker pid (\d+)", result.stderr):
        assert not is_alive(int(pid), None), "the worker spawned before the press still runs"
    assert point != "spawned" or "worker pid" in result.stderr


@pytest.mark.parametrize("point", ["started", "following"])
def test_ctrl_c_once_the_run_exists_checkpoints_and_stops_it(point, tmp_path, tiny_model_dir):
    result, runs = _train_with_ctrl_c_at(point, tmp_path, tiny_model_dir)
    assert result.returncode == 1 and "[aborted]" in result.stdout, result.stdout + result.stderr
    assert "Asking the run to save a checkpoint and stop" in result.stdout and "Traceback" not in result.stderr
    [status_file] = runs.glob("*/status.json")
    status = json.loads(status_file.read_text())
    assert status["state"] == "aborted" and not is_alive(status["pid"], status["pid_started"])


def test_every_help_shows_defaults():
    for command in ("webui", "runs", "resume", "preview"):
        result = _cli(command, "--help")
        assert result.returncode == 0 and "(default:" in result.stdout, command
    assert "7860" in _cli("webui", "--help").stdout and "127.0.0.1" in _cli("webui", "--help").stdout


def test_an_error_is_printed_in_the_language_qlora_studio_lang_names(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("QLORA_STUDIO_LANG", "zh")
    assert main(["resume", "no-such-run", "--runs-dir", str(tmp_path / "runs")]) == 2
    assert capsys.readouterr().err.strip() == "错误：没有名为 'no-such-run' 的训练。"


def test_estimate_prints_the_fit_and_the_measured_time(tmp_path, tiny_model_dir, capsys, monkeypatch):
    monkeypatch.setenv("QLORA_STUDIO_CACHE", str(tmp_path / "cache"))  # its own device locks: the CPU is free
    flags = ["--model.name_or_path", str(tiny_model_dir), "--quantization.method", "none", "--runs-dir", str(tmp_path)]
    assert main(["estimate", *flags, "--data.max_samples", "20"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^Memory: cpu: fits, about .+ free \(.+ to spare\)$", out, re.MULTILINE)
    assert "Time: no finished run like this one" in out  # nothing measured or run yet
    assert main(["estimate", *flags, "--data.max_samples", "20", "--measure"]) == 0
    assert re.search(r"^Time: about .+ tokens/s \(speed measured \d+ s ago\)", capsys.readouterr().out, re.MULTILINE)
