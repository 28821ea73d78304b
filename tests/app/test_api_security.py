"""The web API as an attacker sees it: every handler is an endpoint, so each path is sent through the real
server with gradio_client and must be refused, with nothing read or written outside the workspace. The page's
private events are endpoints too (Gradio hides them from its API page and client, but runs them when called by
number), so they are sent hostile values the same way."""

import http.client
import json
import secrets
import urllib.error
import urllib.parse
import urllib.request

import pytest

from app.server import build_page
from studio.api import Studio
from studio.data.register import MAX_UPLOAD_BYTES
from tests.support.api_client import call, served

pytestmark = pytest.mark.server  # a studio served over HTTP, driven as a script would

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
    uploads = tmp_path_factory.mktemp("gradio-tmp")  # where Gradio keeps uploads before any handler sees them
    cache = tmp_path_factory.mktemp("cache")
    with served(workspace, cache, env={"GRADIO_TEMP_DIR": str(uploads)}, log=workspace.parent / "security.log") as url:
        yield url, workspace, uploads


def test_save_config_writes_only_yaml_inside_the_workspace(server, layout, outside):
    path_box = layout.train.config_path
    for target in (str(outside / "evil.yaml"), "../evil.yaml", "configs/notes.txt"):
        answer = call(server[0], layout, "save_config", extra={path_box: target})
        assert "Error" in answer and ("outside the served workspace" in answer or ".yaml or .yml" in answer)
    assert not (outside / "evil.yaml").exists() and not (server[1].parent / "evil.yaml").exists()
    assert "Saved" in call(server[0], layout, "save_config", extra={path_box: "configs/mine.yaml"})
    assert (server[1] / "configs" / "mine.yaml").is_file()


def test_load_config_reads_only_inside(server, layout, outside):
    answer = call(server[0], layout, "load_config", extra={layout.train.config_path: str(outside / "outside.yaml")})
    assert "outside the served workspace" in answer and "planted" not in answer


def test_preview_never_returns_files_outside(server, layout, outside):
    for fields in (
        {"data.dataset_dir": str(outside), "data.datasets": ["private"]},
        {"data.dataset_dir": "data", "data.datasets": ["leak"]},
        {"data.dataset_dir": "data", "data.datasets": ["up"]},
    ):
        answer = call(server[0], layout, "preview", fields)
        assert "outside the served workspace" in answer and SECRET not in answer


def test_start_refuses_a_planted_checkpoint_and_outside_outputs(server, layout, outside):
    for fields in (
        {"training.resume_from_checkpoint": str(outside / "planted")},
        {"export.output_dir": str(outside / "out")},
        {"model.name_or_path": str(outside)},
    ):
        answer = call(server[0], layout, "start", fields)
        assert "outside the served workspace" in answer, answer
    assert not (server[1] / "runs").exists() or not any((server[1] / "runs").iterdir())


def test_adapters_models_and_exports_outside_are_refused(server, layout, outside):
    picker = layout.chat.picker.dropdown
    assert "outside the served workspace" in call(
        server[0], layout, "load_adapter", extra={picker: str(outside / "planted")}
    )
    assert "outside the served workspace" in call(server[0], layout, "load_model", {"model.name_or_path": str(outside)})
    answer = call(
        server[0],
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
            answer = call(server[0], layout, api_name, extra={layout.train.monitor.runs: "../../../etc"})
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


def _config(server) -> dict:
    return json.loads(urllib.request.urlopen(server[0] + "config", timeout=10).read())


def _call_by_number(server, dependency: dict, data: list, event_data=None) -> str:
    """Run a page event by its fn_index as the page does: /run/predict when it skips the queue, else joining the
    queue and reading its stream to the end. The whole answer, as text (an HTTP refusal included)."""
    session = secrets.token_hex(8)
    body = {
        "data": data,
        "fn_index": dependency["id"],
        "session_hash": session,
        "trigger_id": dependency["targets"][0][0],
        "event_data": event_data,
    }
    route = "gradio_api/queue/join" if dependency["queue"] else "gradio_api/run/predict"
    request = urllib.request.Request(
        server[0] + route, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        answer = urllib.request.urlopen(request, timeout=60).read().decode()
    except urllib.error.HTTPError as error:
        return f"HTTP {error.code}: {error.read().decode(errors='replace')}"
    if not dependency["queue"]:
        return answer
    messages = []
    with urllib.request.urlopen(f"{server[0]}gradio_api/queue/data?session_hash={session}", timeout=120) as stream:
        for line in stream:
            if line.startswith(b"data:"):
                messages.append(line[5:].decode().strip())
                if json.loads(messages[-1]).get("msg") == "process_completed":
                    break
    return "\n".join(messages)


def _private_events(server) -> list[dict]:
    return [d for d in _config(server)["dependencies"] if d["api_visibility"] == "private" and d["backend_fn"]]


def _files(folder) -> set:
    return {(p, p.stat().st_size) for p in folder.rglob("*")}


def test_private_events_run_when_called_by_number_but_harm_nothing(server, outside):
    """No setting of Gradio makes a private event uncallable (routes.py `queue_join` and `predict` run
    `fns[fn_index]` whatever its api_visibility), so each one is sent what the page never would."""
    hostile = [
        str(outside / "private.json"),
        "../../" + outside.name + "/private.json",
        {"path": str(outside / "private.json"), "meta": {"_type": "gradio.FileData"}},
        [str(outside), "../../../etc"],
        1e308,
        "x" * 1_000_000,
        None,
    ]
    select = {"index": [0, 1], "value": "open in Chat"}
    before = _files(outside)
    events = _private_events(server)
    assert len(events) >= 15
    for dependency in events:
        for value in hostile:
            answer = _call_by_number(server, dependency, [value] * len(dependency["inputs"]), select)
            assert SECRET not in answer and "planted" not in answer, (dependency["id"], answer[:500])
    assert _files(outside) == before
    assert not (server[1] / "runs").exists() or not any((server[1] / "runs").iterdir())
    assert _config(server)["dependencies"]  # still serving


def test_the_dataset_list_event_lists_only_folders_inside(server, layout, outside):
    dataset_dir = layout.train.dataset_dir
    [number] = [
        i
        for i, fn in layout.demo.fns.items()
        if fn.api_visibility == "private"
        and any(t[0] == dataset_dir._id for t in fn.targets)
        and [o._id for o in fn.outputs] == [layout.train.datasets._id]  # not the fit line's redraw
    ]
    [dependency] = [d for d in _private_events(server) if d["id"] == number]

    def names(folder: str) -> list[str]:
        done = json.loads(_call_by_number(server, dependency, [folder]).splitlines()[-1])
        return [value for _, value in done["output"]["data"][0]["choices"]]

    assert names("data") == ["leak", "up"]  # it runs: the workspace's registry
    for folder in (str(outside), "../../" + outside.name, "/"):
        assert names(folder) == []


def test_the_compare_table_click_opens_no_adapter_outside(server, layout, outside):
    """The one private event that turns what the request says (a table and a clicked cell) into a path."""
    table = layout.compare.table
    [number] = [i for i, fn in layout.demo.fns.items() if any(t[0] == table._id for t in fn.targets)]
    [dependency] = [d for d in _private_events(server) if d["id"] == number]
    for run in (str(outside / "planted"), "../../" + outside.name + "/planted", "../runs/x"):
        shown = {"headers": ["run", run], "data": [["open", "open in Chat"]]}
        answer = _call_by_number(server, dependency, [None, shown], {"index": [0, 1], "value": "open in Chat"})
        done = json.loads(answer.splitlines()[-1])
        assert done["success"] and done["output"]["data"][1]["value"] is None, answer  # the Chat adapter list


def test_an_upload_over_the_studios_limit_is_refused_before_it_is_kept(server):
    """Gradio's /upload stores files in its temp folder before any handler runs: the limit applies there.
    The body is streamed (a megabyte at a time), so the test does not hold 200 MiB."""
    boundary = "qs" + secrets.token_hex(8)
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.jsonl"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    size, chunk = MAX_UPLOAD_BYTES + 2**20, b"{}\n" * (2**20 // 3) + b"\n"
    url = urllib.parse.urlsplit(server[0])
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    connection.putrequest("POST", "/gradio_api/upload")
    connection.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    connection.putheader("Content-Length", str(len(head) + size + len(tail)))
    connection.endheaders()
    try:
        connection.send(head)
        for _ in range(size // len(chunk)):
            connection.send(chunk)
        connection.send(tail)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may stop reading once it has refused
    answer = connection.getresponse()
    assert answer.status == 413 and str(MAX_UPLOAD_BYTES) in answer.read().decode()
    assert not [p for p in server[2].rglob("*") if p.is_file() and p.stat().st_size > 2**20]
    small = f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="ok.jsonl"\r\n\r\n{{}}\n'
    request = urllib.request.Request(
        server[0] + "gradio_api/upload",
        data=(small + f"\r\n--{boundary}--\r\n").encode(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert urllib.request.urlopen(request, timeout=30).status == 200  # a file under the limit still goes in


def test_the_page_keeps_no_run_history(server):
    """Gradio 6 can record every public call's inputs in the browser (its run history), the Hub token's too."""
    config = _config(server)
    assert config["run_history"] is False and config["max_file_size"] == MAX_UPLOAD_BYTES
    try:
        code = urllib.request.urlopen(server[0] + "gradio_api/runs", timeout=10).status
    except urllib.error.HTTPError as error:
        code = error.code
    assert code == 404


def test_queued_events_run_only_through_the_queue(server):
    """A direct POST would run outside the queue's concurrency limit: as many trainings' checks at once as asked."""
    [start] = [d for d in _config(server)["dependencies"] if d.get("api_name") == "start"]
    request = urllib.request.Request(
        server[0] + "gradio_api/run/predict",
        data=json.dumps({"data": [], "fn_index": start["id"], "session_hash": "x"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 404 and "join the queue" in refused.value.read().decode()


def test_the_chat_cannot_be_sent_a_picture_from_outside_gradios_uploads(server, layout, outside):
    """The Chat tab reads a picture from the path Gradio hands it (the upload or a pane's picture message), so a
    client must not be able to name any other file, in the upload box or in a history it sends."""
    from PIL import Image

    picture = outside / "secret.png"
    Image.new("RGB", (8, 8), "red").save(picture)
    file = {"path": str(picture), "meta": {"_type": "gradio.FileData"}}
    [dependency] = [d for d in _config(server)["dependencies"] if d.get("api_name") == "send"]
    # the server's component ids differ from this process's page (ids count every page a process built); the
    # inputs' order is the same
    [inputs] = [fn.inputs for fn in layout.demo.fns.values() if fn.api_name == "send"]
    tab = layout.chat
    history = [{"role": "user", "content": [{"type": "file", "file": file}]}]
    for values in ({tab.picture: file}, {tab.base_chat: history}, {tab.adapter_chat: history}):
        values[tab.prompt] = "看图"
        answer = _call_by_number(server, dependency, [values.get(component) for component in inputs])
        done = json.loads(answer.splitlines()[-1])
        assert not done["success"] and "not uploaded by a user" in done["output"]["error"], answer[-500:]
