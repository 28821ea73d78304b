"""`qlora-studio chat` and `serve` with --chat.engine vllm where vLLM cannot run: refused on one line, before any
model is loaded, saying what runs here."""

from __future__ import annotations

import pytest
import torch

from studio.cli import main

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="vLLM is refused here for want of a CUDA GPU")


def test_chat_with_vllm_is_refused_before_loading(capsys, tiny_model_dir, strong_adapter):
    model = ("--model.name_or_path", str(tiny_model_dir), "--quantization.method", "none")
    code = main(["chat", *model, "--adapter", str(strong_adapter), "--chat.engine", "vllm", "--prompt", "你好"])
    err = capsys.readouterr().err
    assert code == 2 and "vLLM needs a CUDA GPU; chat.engine: hf runs here" in err
    assert "Loading" not in err and len(err.strip().splitlines()) == 1


def test_serve_with_vllm_is_refused_before_loading(capsys, monkeypatch, tmp_path, tiny_model_dir):
    monkeypatch.chdir(tmp_path)  # serve moves into its workspace: back where the test began afterwards
    model = ("--model.name_or_path", str(tiny_model_dir), "--quantization.method", "none")
    code = main(
        ["serve", *model, "--workspace", str(tmp_path), "--read-only-dir", str(tiny_model_dir.parent)]
        + ["--chat.engine", "vllm", "--training.output_dir", str(tmp_path / "runs")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "vLLM needs a CUDA GPU" in err and "Loading" not in err
