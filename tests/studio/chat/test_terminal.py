import subprocess
import sys


def test_chat_prompt_compare_prints_both_answers_labelled(tiny_model_dir, strong_adapter):
    command = [
        sys.executable,
        "-m",
        "studio.cli",
        "chat",
        "--model.name_or_path",
        str(tiny_model_dir),
        "--quantization.method",
        "none",
        "--generation.temperature",
        "0",
        "--generation.max_new_tokens",
        "8",
        "--adapter",
        str(strong_adapter),
        "--compare",
        "--prompt",
        "你好",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("[base] ") and "\n[adapter strong] " in result.stdout
    assert "tok/s" in result.stderr


def test_compare_without_adapter_is_an_error(tiny_model_dir):
    command = [
        sys.executable,
        "-m",
        "studio.cli",
        "chat",
        "--model.name_or_path",
        str(tiny_model_dir),
        "--compare",
        "--prompt",
        "x",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--compare needs --adapter" in result.stderr


def test_several_adapters_answer_side_by_side_with_the_base(tiny_model_dir, strong_adapter, second_adapter):
    command = [
        sys.executable,
        "-m",
        "studio.cli",
        "chat",
        "--model.name_or_path",
        str(tiny_model_dir),
        "--quantization.method",
        "none",
        "--generation.temperature",
        "0",
        "--generation.max_new_tokens",
        "8",
        "--adapter",
        str(strong_adapter),
        "--adapter",
        str(second_adapter),
        "--compare",
        "--prompt",
        "你是谁？",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    labels = [line.split("]")[0] + "]" for line in result.stdout.splitlines() if line.startswith("[")]
    assert labels == ["[base]", "[adapter strong]", "[adapter second]"]
