"""model.hub modelscope, tested up to the network: this machine cannot reach ModelScope, so the real `modelscope`
package is pointed (MODELSCOPE_ENDPOINT) at a loopback port nobody listens on, or at a local server answering 404,
and its cache (MODELSCOPE_CACHE) is filled the way its own downloads fill it. Where its retries matter (an
unreachable host) the command line runs in a child process with the package's own retry settings at one try."""

import contextlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from studio.config import ModelConfig
from studio.control.validation import check_model
from studio.data.readers import read_records
from studio.data.registry import DataError, resolve_specs
from studio.memory_estimate import local_config_dir
from studio.modeling.sources import ModelLoadError, resolve_model_path
from tests.support import free_port

MODEL, DATASET = "studio-test/tiny-qwen2", "studio-test/alpaca-ms"
ROWS = [{"instruction": f"question {i}", "input": "", "output": f"answer {i}"} for i in range(6)]
INSTALL = r"pip install 'qlora-studio\[modelscope\]'"


@pytest.fixture(scope="module")
def cache(tmp_path_factory, tiny_model_dir):
    """ModelScope's cache holding the tiny model and a small dataset where snapshot_download puts a repository
    (`{cache}/{kind}s/{owner}--{name}/snapshots/master`), so it finds them without the network."""
    root = tmp_path_factory.mktemp("modelscope-cache")
    shutil.copytree(tiny_model_dir, root / "models" / MODEL.replace("/", "--") / "snapshots" / "master")
    dataset = root / "datasets" / DATASET.replace("/", "--") / "snapshots" / "master"
    dataset.mkdir(parents=True)
    (dataset / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    return root


@pytest.fixture
def registry(tmp_path):
    entries = {
        "ms_only": {"ms_hub_url": DATASET},
        "both": {"hf_hub_url": "studio-test/alpaca-hf", "ms_hub_url": DATASET},
        "absent": {"ms_hub_url": "studio-test/absent"},
    }
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dataset_info.json").write_text(json.dumps(entries))
    return tmp_path / "data"


@pytest.fixture
def settings(monkeypatch, cache, tmp_path):
    """This process's ModelScope settings: the cache above, an endpoint nobody answers, HF_HUB_OFFLINE=1. The
    package reads them once per process, into a configuration it is told to forget here."""
    from modelscope_hub import set_default_config

    monkeypatch.setenv("MODELSCOPE_CACHE", str(cache))
    monkeypatch.setenv("MODELSCOPE_HOME", str(tmp_path / "modelscope-home"))  # where it keeps its install id
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("datasets.config.HF_DATASETS_CACHE", tmp_path / "datasets-cache")  # read at import
    set_default_config(None)
    yield monkeypatch
    set_default_config(None)


@contextlib.contextmanager
def _not_found():
    """A local ModelScope that answers every request as ModelScope answers an unknown id."""

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b'{"Code": 10010205001, "Message": "not found", "Success": false}'
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def _cli(*args, cache, tmp_path):
    env = {
        **os.environ,
        "MODELSCOPE_CACHE": str(cache),
        "MODELSCOPE_HOME": str(tmp_path / "modelscope-home"),
        "MODELSCOPE_ENDPOINT": f"http://127.0.0.1:{free_port()}",  # a port nobody listens on
        "MODELSCOPE_API_MAX_RETRIES": "1",  # the package's own settings: one try, not half a minute of back-off
        "MODELSCOPE_REPO_TREE_PAGE_MAX_ATTEMPTS": "1",
        "HF_HUB_OFFLINE": "0",
    }
    command = [sys.executable, "-m", "studio.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)


def _resolve(model: ModelConfig) -> str:
    return resolve_model_path(model, progress=lambda _: None)


def test_a_model_in_modelscopes_cache_loads_and_answers_when_modelscope_cannot_be_reached(cache, tmp_path):
    flags = ["--model.hub", "modelscope", "--model.name_or_path", MODEL, "--quantization.method", "none"]
    chat = _cli("chat", *flags, "--generation.max_new_tokens", "4", "--prompt", "hi", cache=cache, tmp_path=tmp_path)
    assert chat.returncode == 0, chat.stderr
    assert f"Fetching {MODEL} from ModelScope" in chat.stderr and f"Loaded {MODEL}" in chat.stderr
    assert "(4 tokens" in chat.stderr and chat.stdout.strip()  # the answer itself


def test_a_model_modelscope_cannot_be_reached_for_is_refused_with_what_to_do(cache, tmp_path):
    flags = ["--model.hub", "modelscope", "--model.name_or_path", "studio-test/absent"]
    before_run = _cli("train", "--runs-dir", str(tmp_path / "runs"), *flags, cache=cache, tmp_path=tmp_path)
    download = _cli("chat", *flags, "--prompt", "hi", cache=cache, tmp_path=tmp_path)  # the worker's own fetch
    for result in (before_run, download):
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        said = result.stderr
        assert "'studio-test/absent' is not in the local ModelScope cache and ModelScope cannot be reached" in said
        assert "modelscope download studio-test/absent --local-dir FOLDER" in said
    assert not (tmp_path / "runs").exists()


def test_offline_a_cached_model_is_its_cache_folder_and_any_other_is_refused(settings, cache):
    cached = ModelConfig(hub="modelscope", name_or_path=MODEL)
    check_model(cached)
    folder = _resolve(cached)
    assert folder == str(cache / "models" / MODEL.replace("/", "--") / "snapshots" / "master")
    assert local_config_dir(cached) == Path(folder)  # the memory estimate reads its config.json there
    absent = ModelConfig(hub="modelscope", name_or_path="studio-test/absent")
    for step in (check_model, _resolve):
        with pytest.raises(
            ModelLoadError, match="'studio-test/absent' is not in the local ModelScope cache and HF_HUB"
        ):
            step(absent)


def test_an_id_modelscope_does_not_know_is_refused_as_no_such_model(settings, registry):
    absent = ModelConfig(hub="modelscope", name_or_path="studio-test/absent")
    [spec] = resolve_specs(registry, ["absent"])
    settings.setenv("HF_HUB_OFFLINE", "0")
    with _not_found() as endpoint:
        settings.setenv("MODELSCOPE_ENDPOINT", endpoint)
        for step in (check_model, _resolve):
            with pytest.raises(ModelLoadError, match="No model 'studio-test/absent' on ModelScope"):
                step(absent)
        with pytest.raises(DataError, match="No dataset 'studio-test/absent' on ModelScope"):
            read_records(registry, spec, "modelscope")


def test_datasets_load_from_modelscope_as_llama_factory_picks_the_hub(settings, registry):
    ms_only, both, absent = resolve_specs(registry, ["ms_only", "both", "absent"])
    assert read_records(registry, ms_only, "huggingface").rows == ROWS  # ModelScope's is the only id it has
    assert read_records(registry, both, "modelscope").rows == ROWS
    assert both.hub_source("huggingface") == ("huggingface", "studio-test/alpaca-hf")
    with pytest.raises(DataError, match="'studio-test/absent' is not in the local ModelScope cache and HF_HUB") as said:
        read_records(registry, absent, "modelscope")
    assert "modelscope download studio-test/absent --repo-type dataset" in str(said.value)


def test_without_the_package_modelscope_ids_say_how_to_install_it_and_folders_still_load(
    monkeypatch, tiny_model_dir, registry
):
    monkeypatch.setitem(sys.modules, "modelscope_hub", None)  # what `import` meets when the extra is not installed
    hub_id = ModelConfig(hub="modelscope", name_or_path=MODEL)
    for step in (check_model, _resolve):
        with pytest.raises(ModelLoadError, match=INSTALL):
            step(hub_id)
    [spec] = resolve_specs(registry, ["ms_only"])
    with pytest.raises(DataError, match=INSTALL):
        read_records(registry, spec, "huggingface")
    folder = ModelConfig(hub="modelscope", name_or_path=str(tiny_model_dir))
    check_model(folder)
    assert _resolve(folder) == str(tiny_model_dir)


def test_a_name_neither_folder_nor_id_is_a_missing_folder_whatever_the_hub(tmp_path):
    for hub in ("huggingface", "modelscope"):
        with pytest.raises(ModelLoadError, match="Model folder .* not found"):
            check_model(ModelConfig(hub=hub, name_or_path=str(tmp_path / "no" / "such")))
