"""Every field that names a place, attacked over the HTTP API as a program on the network would: registry entries,
model names, config file names and contents, results of an adapter shared read-only. Each attack is refused with a
clear error (never shown as a bug) and nothing outside the workspace is read, created or written."""

import json
import os
import shutil
import time

import pytest
from PIL import Image

from app.server import build_page
from studio.api import Studio
from studio.config import RunConfig
from tests.support.api_client import call, served
from tests.support.openai_stub import openai_stub

pytestmark = pytest.mark.server  # a studio served over HTTP, driven as a script would

SECRET = "SSH-PRIVATE-KEY-5e1c"


@pytest.fixture(scope="module")
def layout():
    return build_page(Studio("runs"))


@pytest.fixture(scope="module")
def outside(tmp_path_factory, tiny_model_dir, strong_adapter):
    """Outside the workspace: a secrets folder, a model folder, and a run shared read-only (--read-only-dir)."""
    root = tmp_path_factory.mktemp("outside-places")
    (root / "secrets").mkdir()
    (root / "secrets" / "id_rsa").write_text(f"{SECRET}\n")
    Image.new("RGB", (64, 64), "red").save(root / "secrets" / "face.png")  # a private picture
    shutil.copytree(tiny_model_dir, root / "model")
    shutil.copytree(tiny_model_dir, root / "shared" / "model")
    run = root / "shared" / "run-1"
    config = RunConfig().with_overrides({"model.name_or_path": str(root / "shared" / "model")})
    config.save(run / "config.yaml")
    shutil.copytree(strong_adapter, run / "adapter")
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory, outside):
    workspace = tmp_path_factory.mktemp("ws-places")
    planted = workspace / "planted"
    planted.mkdir()
    (workspace / "owner").mkdir()
    (workspace / "owner" / "name").symlink_to(outside / "secrets")  # spelled like a hub id, a folder in fact
    registry = {
        "loader": {"hf_hub_url": "text", "folder": str(outside / "secrets")},
        "climb": {"hf_hub_url": "owner/set", "folder": "../../../" + str(outside / "secrets")},
        "linked": {"hf_hub_url": "owner/name"},
        "ms_linked": {"ms_hub_url": "owner/name"},  # a ModelScope id, spelled like the planted folder
        "script": {"file_name": "x.json", "script_url": str(outside / "secrets" / "id_rsa")},
    }
    turns = [{"role": "user", "content": "<image>?"}, {"role": "assistant", "content": "!"}]
    for name, picture in (
        ("climb_pictures", os.path.relpath(outside / "secrets" / "face.png", planted)),
        ("absolute_pictures", str(outside / "secrets" / "face.png")),
    ):
        registry[name] = {"file_name": f"{name}.json", "formatting": "openai", "columns": {"images": "images"}}
        (planted / f"{name}.json").write_text(json.dumps([{"messages": turns, "images": [picture]}]))
    (planted / "dataset_info.json").write_text(json.dumps(registry))
    (planted / "x.json").write_text("[]")
    with served(workspace, tmp_path_factory.mktemp("cache-places"), "--read-only-dir", str(outside / "shared")) as url:
        yield url, workspace


def _refused(answer: str) -> bool:
    return ("Error" in answer or "outside the served workspace" in answer) and "a bug" not in answer


def test_a_registry_entry_cannot_read_a_folder_outside(server, layout):
    url, _ = server
    for name in ("loader", "climb", "linked", "script"):
        answer = call(url, layout, "preview", {"data.dataset_dir": "planted", "data.datasets": [name]})
        assert _refused(answer) and SECRET not in answer, (name, answer)
        assert "outside the served workspace" in answer or "not a hub dataset id" in answer or "folder inside" in answer


def test_a_dataset_cannot_show_or_train_on_a_picture_outside(server, layout):
    url, _ = server
    for name in ("climb_pictures", "absolute_pictures"):
        for api_name in ("preview", "start"):
            answer = call(url, layout, api_name, {"data.dataset_dir": "planted", "data.datasets": [name]})
            assert _refused(answer) and "outside the served workspace" in answer, (name, answer)
            assert "picture '" in answer and "data:image" not in answer, answer


def test_an_upload_cannot_become_a_registry(server, layout, tmp_path):
    from gradio_client import handle_file

    url, workspace = server
    planted = tmp_path / "registry.json"
    planted.write_text(json.dumps({"ssh": {"file_name": "x.json", "columns": {"prompt": "a", "response": "b"}}}))
    for name in ("dataset_info", "DATASET_INFO", "dataset_info.json"):
        answer = call(
            url,
            layout,
            "register_dataset",
            {"data.dataset_dir": "fresh"},
            {
                layout.train.upload.file: handle_file(str(planted)),
                layout.train.upload.name: name,
                layout.train.upload.entry: json.dumps({"columns": {"prompt": "ssh"}}),
            },
        )
        assert _refused(answer) and "reserved for the registry" in answer, answer
    assert not (workspace / "fresh" / "dataset_info.json").exists()


def test_modelscope_ids_are_checked_as_hugging_face_ids_are(server, layout):
    """model.hub modelscope: a model or dataset id spelled like a folder that leads outside is refused the same way,
    before ModelScope's package is asked for anything."""
    url, _ = server
    for fields in (
        {"model.hub": "modelscope", "model.name_or_path": "owner/name"},
        {"model.hub": "modelscope", "data.dataset_dir": "planted", "data.datasets": ["ms_linked"]},
        {"model.hub": "huggingface", "data.dataset_dir": "planted", "data.datasets": ["ms_linked"]},
    ):
        for api_name in ("preview", "start"):
            answer = call(url, layout, api_name, fields)
            assert _refused(answer) and "outside the served workspace" in answer and SECRET not in answer, answer


@pytest.mark.parametrize("prefix", ["embedded:../", "embedded:SmolLM2-135M-Instruct/../../", ""])
def test_a_model_name_cannot_lead_out_of_the_workspace(server, layout, outside, prefix):
    url, workspace = server
    forged = prefix + os.path.relpath(outside / "model", workspace)  # a model folder, config.json and all
    adapter = {layout.export.picker.dropdown: "runs/x/adapter", layout.evaluate.picker.dropdown: "runs/x/adapter"}
    for api_name in ("command", "preview", "load_model", "start", "export", "evaluate"):
        answer = call(url, layout, api_name, {"model.name_or_path": forged}, adapter)
        assert _refused(answer) and "Memory per process" not in answer, (api_name, answer)


def test_config_file_names_and_contents_are_refused_clearly(server, layout):
    url, workspace = server
    box = layout.train.config_path
    for target in ("configs/a\nb.yaml", "configs/a\x00b.yaml", "c" * 300 + ".yaml", "embedded:../x.yaml"):
        answer = call(url, layout, "save_config", extra={box: target})
        assert _refused(answer) and "Config file" in answer, (target, answer)
    assert not (workspace / "embedded:..").exists() and not (workspace / "configs").exists()
    (workspace / "deep.yaml").write_text("model: " + "[" * 100_000)
    (workspace / "huge.yaml").write_text("name: run\n" + "# padding\n" * 2_000_000)  # 20 MB
    for target in ("deep.yaml", "huge.yaml"):
        started = time.time()
        answer = call(url, layout, "load_config", extra={box: target})
        assert _refused(answer) and "Invalid configuration" in answer and time.time() - started < 10, answer


def test_results_of_an_adapter_shared_read_only_go_to_the_workspace(server, layout, outside):
    url, workspace = server
    run = outside / "shared" / "run-1"
    fields = {
        "model.name_or_path": str(outside / "shared" / "model"),
        "quantization.method": "none",
        "evaluation.max_samples": 2,
        "evaluation.batch_size": 2,
        "generation.max_new_tokens": 4,
    }
    answer = call(url, layout, "evaluate", fields, {layout.evaluate.picker.dropdown: str(run / "adapter")})
    assert "a bug" not in answer and "rror" not in answer, answer
    assert not (run / "evaluations").exists()  # the shared folder is read, never written
    assert list((workspace / "evaluations").glob("*/metrics.json"))


def test_a_judge_endpoint_the_server_was_not_started_with_is_never_called(server, layout):
    url, _ = server
    with openai_stub() as (judge_url, seen):
        fields = {"evaluation.judge": "endpoint", "evaluation.judge_url": judge_url}
        answer = call(url, layout, "evaluate", fields, {layout.evaluate.picker.dropdown: "runs/x/adapter"})
    assert _refused(answer) and "--judge-endpoint" in answer, answer
    assert seen.paths == []
