"""The studio's web API as any program on the network sees it: a real server subprocess, endpoints called by name
with gradio_client, every input given by config path or by component (the rest take the form's defaults)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
import pytest

from tests.support import free_port


@contextmanager
def served(workspace: Path, cache: Path, *flags: str, env: dict | None = None, log: Path | None = None):
    """`python -m app` on a free port serving `workspace` (`env`: more environment); yields its URL."""
    port = free_port()
    env = {**os.environ, "QLORA_STUDIO_CACHE": str(cache), "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})}
    with open(log or workspace.parent / f"{workspace.name}-server.log", "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "--port", str(port), "--workspace", str(workspace), *flags],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
        url = f"http://127.0.0.1:{port}/"
        try:
            _wait_until_served(url, process)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)


def _wait_until_served(url: str, process: subprocess.Popen, timeout: float = 90.0) -> None:
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


def call(url: str, layout, api_name: str, fields: dict | None = None, extra: dict | None = None) -> str:
    """Endpoint `api_name` called with the form's defaults, `fields` by config path and `extra` by component;
    the answer as JSON text (the last update of a streaming endpoint)."""
    from gradio_client import Client

    form = layout.page.form
    by_component = {c.component: c.to_component_value(form.default(c.path)) for c in form.controls.values()}
    by_component.update({form.controls[path].component: value for path, value in (fields or {}).items()})
    by_component.update(extra or {})
    [dependency] = [d for d in layout.demo.fns.values() if d.api_name == api_name]
    args = [by_component.get(c, getattr(c, "value", None)) for c in dependency.inputs if not isinstance(c, gr.State)]
    result = Client(url, verbose=False).predict(*args, api_name=f"/{api_name}")
    return json.dumps(result, ensure_ascii=False, default=str)
