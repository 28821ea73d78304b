"""The web API as an attacker sees it: every handler is an endpoint, so each path is sent through the real
server with gradio_client and must be refused, with nothing read or written outside the workspace."""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import gradio as gr
import pytest
from support import free_port

from app.server import build_page
from studio.api import Studio

SECRET = "TOP-SECRET-7f3a"


@pytest.fixture(scope="module")
def layout():
    """The page the server builds, to learn each endpoint's inputs in order (the server sorts them the same way)."""
    return build_page(Studio("runs"))


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    """Things an attacker would like to reach: a private dataset, a planted checkpoint, a writable target."""
    root = tmp_path_factory.mktemp("outside")
    (root / "private.json").write_text(json.dumps([{"instruction": SECRET, "output": SECRET}]))
    (root / "dataset_info.json").write_text(json.dumps({"private": {"file_name": "private.json"}}))
    (root / "planted" / "adapter").mkdir(parents=True)
    (root / "planted" / "state.json").write_text('{"step": 1}')
    (root / "outside.yaml").write_text("name: planted\n")
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory, outside):
    workspace = tmp_path_factory.mktemp("workspace")
    (workspace / "data").mkdir()
    registry = {
        "leak": {"file_name": str(outside / "private.json")},
        "up": {"file_name": "../../" + outside.name + "/private.json"},
    }
    (workspace / "data" / "dataset_info.json").write_text(json.dumps(registry))
    port = free_port()
    env = {
        **os.environ,
        "QLORA_STUDIO_CACHE": str(tmp_path_factory.mktemp("cache")),
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    log = open(workspace.parent / "security-server.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "--port", str(port), "--workspace", str(workspace)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}/"
    _wait_until_served(url, process)
    yield url, workspace
    process.terminate()
    process.wait(timeout=30)


def _wait_until_served(url, process, timeout=90.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            if process.poll() is not None:
                pytest.fail("the server exited")
            time.sleep(0.5)
    pytest.fail("the server did not start")


def _call(server, layout, api_name: str, fields: dict | None = None, extra: dict | None = None):
    """Call endpoint `api_name` with the form's defaults, `fields` by config path and `extra` by component."""
    from gradio_client import Client

    form = layout.page.form
    by_component = {c.component: c.to_component_value(form.default(c.path)) for c in form.controls.values()}
    by_component.update({form.controls[path].component: value for path, value in (fields or {}).items()})
    by_component.update(extra or {})
    [dependency] = [d for d in layout.demo.fns.values() if d.api_name == api_name]
    args = [by_component.get(c, getattr(c, "value", None)) for c in dependency.inputs if not isinstance(c, gr.State)]
    result = Client(server[0], verbose=False).predict(*args, api_name=f"/{api_name}")
    return json.dumps(result, ensure_ascii=False, default=str)


def test_save_config_writes_only_yaml_inside_the_workspace(server, layout, outside):
    path_box = layout.train.config_path
    for target in (str(outside / "evil.yaml"), "../evil.yaml", "configs/notes.txt"):
        answer = _call(server, layout, "save_config", extra={path_box: target})
        assert "Error" in answer and ("outside the served workspace" in answer or ".yaml or .yml" in answer)
    assert not (outside / "evil.yaml").exists() and not (server[1].parent / "evil.yaml").exists()
    assert "Saved" in _call(server, layout, "save_config", extra={path_box: "configs/mine.yaml"})
    assert (server[1] / "configs" / "mine.yaml").is_file()


def test_load_config_reads_only_inside(server, layout, outside):
    answer = _call(server, layout, "load_config", extra={layout.train.config_path: str(outside / "outside.yaml")})
    assert "outside the served workspace" in answer and "planted" not in answer


def test_preview_never_returns_files_outside(server, layout, outside):
    for fields in (
        {"data.dataset_dir": str(outside), "data.datasets": ["private"]},
        {"data.dataset_dir": "data", "data.datasets": ["leak"]},
        {"data.dataset_dir": "data", "data.datasets": ["up"]},
    ):
        answer = _call(server, layout, "preview", fields)
        assert "outside the served workspace" in answer and SECRET not in answer


def test_start_refuses_a_planted_checkpoint_and_outside_outputs(server, layout, outside):
    for fields in (
        {"training.resume_from_checkpoint": str(outside / "planted")},
        {"export.output_dir": str(outside / "out")},
        {"model.name_or_path": str(outside)},
    ):
        answer = _call(server, layout, "start", fields)
        assert "outside the served workspace" in answer, answer
    assert not (server[1] / "runs").exists() or not any((server[1] / "runs").iterdir())


def test_adapters_models_and_exports_outside_are_refused(server, layout, outside):
    picker = layout.chat.picker.dropdown
    assert "outside the served workspace" in _call(
        server, layout, "load_adapter", extra={picker: str(outside / "planted")}
    )
    assert "outside the served workspace" in _call(server, layout, "load_model", {"model.name_or_path": str(outside)})
    answer = _call(
        server,
        layout,
        "export",
        {"export.output_dir": str(outside / "exported")},
        extra={layout.export.picker.dropdown: "runs/x/adapter"},
    )
    assert "outside the served workspace" in answer and not (outside / "exported").exists()


def test_run_ids_cannot_walk_out_of_the_runs_folder(server, layout):
    from gradio_client.exceptions import AppError

    for api_name in ("abort", "resume"):
        try:  # Gradio itself may refuse a value that is not among the dropdown's choices
            answer = _call(server, layout, api_name, extra={layout.train.monitor.runs: "../../../etc"})
        except AppError as error:
            answer = str(error)
        assert "No run named" in answer or "not in the list of choices" in answer


def test_files_of_the_workspace_are_not_served(server, layout):
    target = server[1] / "configs" / "served.yaml"
    target.parent.mkdir(exist_ok=True)
    target.write_text(f"name: {SECRET}\n")
    for route in (f"gradio_api/file={target}", f"file={target}"):
        try:
            body = urllib.request.urlopen(server[0] + route, timeout=10).read().decode()
        except urllib.error.HTTPError:
            continue
        assert SECRET not in body
