"""`qlora-studio serve` as a real process, called with plain curl and with OpenAI's client."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import openai
import pytest

from studio.config import ModelConfig, QuantizationConfig
from tests.studio.openai_api.conftest import GREEDY, QUESTION
from tests.support import free_port

pytestmark = pytest.mark.server  # a server process called over HTTP, as a script would
KEY = "serve-test-key-" + "0" * 20
CURL = shutil.which("curl")


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir, strong_adapter, second_adapter):
    """The command on a free port, over the tiny model and both adapters (the workspace: the session's temp folder,
    where they all live), its key from a file."""
    folder = tmp_path_factory.mktemp("serve")
    key_file = folder / "keys"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    port = free_port()
    command = [
        *("-m", "studio.cli", "serve", "--port", str(port), "--workspace", str(tmp_path_factory.getbasetemp())),
        *("--model.name_or_path", str(tiny_model_dir), "--quantization.method", "none"),
        *("--adapter", f"strong={strong_adapter}", "--adapter", f"second={second_adapter}"),
        *("--api-key-file", str(key_file), "--training.output_dir", str(folder / "runs")),
    ]
    log = open(folder / "serve.log", "w")
    process = subprocess.Popen([sys.executable, *command], stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 120
    while "OpenAI-compatible API at" not in (folder / "serve.log").read_text():
        if time.time() > deadline or process.poll() is not None:
            process.kill()
            pytest.fail("serve did not start: " + (folder / "serve.log").read_text())
        time.sleep(0.3)
    # the line is printed just before uvicorn binds, which a loaded machine may do seconds later
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            break
        except OSError:
            if time.time() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("serve did not listen: " + (folder / "serve.log").read_text())
            time.sleep(0.3)
    yield url
    process.terminate()
    # uvicorn shuts down on SIGTERM, then lets the signal end the process as it would have (0 on older versions)
    assert process.wait(timeout=30) in (0, -signal.SIGTERM)
    log.close()


def _curl(*args: str) -> str:
    if CURL is None:
        pytest.skip("curl is not installed")
    done = subprocess.run([CURL, "-sS", "--max-time", "120", *args], capture_output=True, text=True, check=True)
    return done.stdout


def test_curl_lists_the_models_and_streams_an_answer(server):
    auth = ("-H", f"Authorization: Bearer {KEY}")
    refused = json.loads(_curl(f"{server}/models"))
    assert refused["error"]["code"] == "invalid_api_key"
    listed = json.loads(_curl(*auth, f"{server}/models"))
    assert [model["id"] for model in listed["data"]] == ["tiny-qwen2", "strong", "second"]
    body = json.dumps({"model": "second", "messages": QUESTION, "max_tokens": 5, "temperature": 0, "stream": True})
    streamed = _curl("-N", *auth, "-H", "Content-Type: application/json", "-d", body, f"{server}/chat/completions")
    events = [line.removeprefix("data: ") for line in streamed.splitlines() if line]
    assert events[-1] == "[DONE]" and all(line.startswith("data: ") for line in streamed.splitlines() if line)
    chunks = [json.loads(event) for event in events[:-1]]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length" and chunks[0]["model"] == "second"
    body = json.dumps({"model": "strong", "prompt": "你好", "max_tokens": 3})
    completion = json.loads(_curl(*auth, "-H", "Content-Type: application/json", "-d", body, f"{server}/completions"))
    assert completion["usage"]["completion_tokens"] == 3


def test_the_openai_client_gets_each_adapter_in_turn(server, tiny_model_dir, strong_adapter, second_adapter):
    from studio.chat import ChatEngine

    engine = ChatEngine()  # the answers expected, from an engine of this process
    engine.load(ModelConfig(name_or_path=str(tiny_model_dir)), QuantizationConfig(method="none"))
    engine.load_adapter(str(strong_adapter), "strong")
    engine.load_adapter(str(second_adapter), "second")
    client = openai.OpenAI(base_url=server, api_key=KEY, max_retries=0)
    for model in ("strong", "second", "strong", "tiny-qwen2"):
        reply = client.chat.completions.create(model=model, messages=QUESTION, temperature=0, max_tokens=12)
        expected = engine.answer(QUESTION, None if model == "tiny-qwen2" else model, GREEDY).text
        assert reply.choices[0].message.content == expected
    engine.unload()


def test_beyond_loopback_without_a_key_it_refuses_to_start(tmp_path, tiny_model_dir):
    env = {key: value for key, value in os.environ.items() if key != "QLORA_STUDIO_API_KEY"}
    started = time.time()
    done = subprocess.run(
        [sys.executable, "-m", "studio.cli", "serve", "--host", "0.0.0.0", "--model.name_or_path", str(tiny_model_dir)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 2 and "QLORA_STUDIO_API_KEY" in done.stderr
    assert "Loaded" not in done.stderr and time.time() - started < 60  # refused before any model loads


def test_adapters_outside_the_workspace_and_malformed_flags_are_refused(tmp_path, strong_adapter):
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    for adapter, said in ((f"strong={strong_adapter}", "outside"), ("strong", "expected NAME=PATH")):
        done = subprocess.run(
            [sys.executable, "-m", "studio.cli", "serve", "--workspace", str(workspace), "--adapter", adapter],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2 and said in done.stderr, done.stderr


def test_a_gguf_file_is_refused_before_it_loads(tmp_path):
    """llama.cpp answers a GGUF file in Chat only: serving it would load it and then refuse every request."""
    (tmp_path / "model-q8_0.gguf").write_bytes(b"GGUF")
    done = subprocess.run(
        [sys.executable, "-m", "studio.cli", "serve", "--workspace", str(tmp_path)]
        + ["--model.name_or_path", "model-q8_0.gguf", "--training.output_dir", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "model-q8_0.gguf is a GGUF file" in done.stderr, done.stderr
    assert "Loaded" not in done.stderr and str(tmp_path) not in done.stderr
