"""Chat and Evaluate share one engine: through the real server (gradio_client), as a page uses them one after another.

Gradio runs each step of a streaming handler on whichever worker thread is free and closes an abandoned one
from its event loop, so these go through a served page: an engine lock held across a yield broke exactly here
(chat once, then Evaluate said the model was busy until the server restarted).
"""

import json
import re
import threading

import gradio as gr
import pytest

pytestmark = pytest.mark.server  # a studio served over HTTP, driven as a script would

QUESTION = "你是谁？"


@pytest.fixture(scope="module")
def layout(studio):
    """The page the server built (same code, same --config), to learn each endpoint's inputs in order."""
    import tempfile

    from app.server import build_page
    from studio.api import Studio
    from studio.config import RunConfig

    return build_page(Studio(tempfile.mkdtemp()), RunConfig.from_yaml(studio.config_file))


@pytest.fixture(scope="module")
def client(studio):
    from gradio_client import Client

    return Client(studio.url, verbose=False)


@pytest.fixture(scope="module")
def another_page(client):
    """Another open page's run monitor polling all along, as the Train tab's timer does: it keeps Gradio's worker
    threads busy, so successive steps of an answer's generator run on different threads, as they do for a user."""
    from gradio_client import Client

    other, done = Client(client.src, verbose=False), threading.Event()

    def poll():
        while not done.is_set():
            other.predict(None, api_name="/poll")

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    yield
    done.set()
    poller.join(timeout=30)


@pytest.fixture(scope="module")
def adapter(client, layout, strong_adapter, another_page):
    """The strong adapter, loaded with the tiny model into the served engine."""
    assert client.predict(*_args(layout, "load_model"), api_name="/load_model").startswith("Loaded")
    assert "loaded onto" in _switch_adapter(client, layout, strong_adapter, "load_adapter")
    return strong_adapter


def _args(layout, api_name: str, fields: dict | None = None, extra: dict | None = None) -> list:
    """Endpoint `api_name`'s inputs: the form as the server's --config filled it, `fields` by config path,
    `extra` by component."""
    form = layout.page.form
    values = {c.component: c.to_component_value(form.default(c.path)) for c in form.controls.values()}
    values.update({form.controls[path].component: value for path, value in (fields or {}).items()})
    values.update(extra or {})
    [dependency] = [d for d in layout.demo.fns.values() if d.api_name == api_name]
    return [values.get(c, getattr(c, "value", None)) for c in dependency.inputs if not isinstance(c, gr.State)]


def _send_args(layout, adapter, max_new_tokens: int) -> list:
    chat = layout.chat
    extra = {chat.prompt: QUESTION, chat.mode: "compare", chat.picker.dropdown: str(adapter)}
    return _args(layout, "send", {"generation.max_new_tokens": max_new_tokens}, extra)


def _send(client, layout, adapter, max_new_tokens: int = 48) -> tuple:
    base, tuned, base_speed, tuned_speed, _, status = client.predict(
        *_send_args(layout, adapter, max_new_tokens), api_name="/send"
    )
    assert "Unexpected error" not in str(status) and "Error:" not in str(status), status
    assert base[-1]["content"] and tuned[-1]["content"] and "tok/s" in base_speed and "tok/s" in tuned_speed
    return base, tuned


def _switch_adapter(client, layout, adapter, api_name: str) -> str:
    """Load or unload `adapter` in Chat; the status line it shows."""
    args = _args(layout, api_name, extra={layout.chat.picker.dropdown: str(adapter)})
    return client.predict(*args, api_name=f"/{api_name}")


def test_chat_then_evaluate_then_chat_then_adapter_changes(client, layout, adapter):
    first = _send(client, layout, adapter)

    evaluate = _args(layout, "evaluate", extra={layout.evaluate.picker.dropdown: str(adapter)})
    progress, metrics, *_ = client.predict(*evaluate, api_name="/evaluate")
    assert "finished" in progress and "busy" not in progress, progress
    assert "rouge-l" in json.dumps(metrics)

    again = _send(client, layout, adapter)
    assert again[1][-1] == first[1][-1]  # greedy: the same answer as before evaluation, from the same engine
    assert "unloaded" in _switch_adapter(client, layout, adapter, "unload_adapter")
    assert "loaded onto" in _switch_adapter(client, layout, adapter, "load_adapter")


def test_stop_ends_the_answer_and_frees_the_engine(client, layout, adapter):
    job = client.submit(*_send_args(layout, adapter, 8192), api_name="/send")
    _wait_for_tokens(job)
    client.predict(api_name="/stop")
    _, _, base_speed, tuned_speed, _, status = job.result(timeout=120)
    assert "Unexpected error" not in str(status), status
    tokens = [int(re.match(r"(\d+) tokens", speed).group(1)) for speed in (base_speed, tuned_speed)]
    assert max(tokens) < 8192, tokens
    assert "unloaded" in _switch_adapter(client, layout, adapter, "unload_adapter")
    assert "loaded onto" in _switch_adapter(client, layout, adapter, "load_adapter")


def test_a_cancelled_answer_frees_the_engine(client, layout, adapter):
    """Cancelling closes the handler from Gradio's event loop thread, as a closed page does."""
    job = client.submit(*_send_args(layout, adapter, 8192), api_name="/send")
    _wait_for_tokens(job)
    job.cancel()
    assert "unloaded" in _switch_adapter(client, layout, adapter, "unload_adapter")
    assert "loaded onto" in _switch_adapter(client, layout, adapter, "load_adapter")
    _send(client, layout, adapter)


def _wait_for_tokens(job) -> None:
    from tests.support import wait_for

    wait_for(lambda: any("tok/s" in str(output) for output in job.outputs()), timeout=120, what="the first tokens")


def test_a_full_runs_model_answers_beside_the_base_and_the_adapter_stays(client, layout, adapter, method_runs):
    full = method_runs("full").model_dir
    assert "(full: a whole model) loaded beside" in _switch_adapter(client, layout, full, "load_adapter")
    base, tuned = _send(client, layout, full, max_new_tokens=8)
    assert tuned[-1]["content"] != base[-1]["content"]
    assert "unloaded" in _switch_adapter(client, layout, full, "unload_adapter")
    _send(client, layout, adapter)
