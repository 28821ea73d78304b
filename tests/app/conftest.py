"""The real studio served on a free port, driven by Debian's Chromium through Playwright."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import free_port

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@dataclass
class Served:
    url: str
    root: Path  # this module's folder: config, runs, evaluations, exports
    workspace: Path  # what the server serves: the session's temp folder (tiny models and adapters included)
    config_file: Path  # the --config that filled the form


@pytest.fixture(scope="module")
def studio(tmp_path_factory, tiny_model_dir):
    """A running studio whose form defaults train the tiny model for a long time."""
    with serve_studio(tmp_path_factory, tiny_model_dir) as served:
        yield served


@contextmanager
def serve_studio(tmp_path_factory, model_dir: Path, **overrides: str) -> Iterator[Served]:
    """A studio served on a free port whose form trains `model_dir` for a long time (`overrides`: more settings,
    by config path); its workspace is the session's temp folder, so the tiny models and adapters are inside."""
    from studio.config import RunConfig

    root = tmp_path_factory.mktemp("studio")
    config = RunConfig().with_overrides(
        {
            "name": "browser",
            "model.name_or_path": str(model_dir),
            "quantization.method": "none",
            "data.max_samples": "40",
            "training.max_steps": "100000",
            "training.logging_steps": "10",
            "training.eval_steps": "200",
            "training.save_steps": "100000",
            "training.learning_rate": "5e-3",
            "training.gradient_checkpointing": "false",
            "evaluation.max_samples": "3",
            "evaluation.batch_size": "3",
            "generation.max_new_tokens": "8",
            "generation.temperature": "0",
            "export.output_dir": str(root / "export"),
            "evaluation.output_dir": str(root / "evaluations"),
            **overrides,
        }
    )
    config.save(root / "config.yaml")
    port = free_port()
    env = {**os.environ, "QLORA_STUDIO_CACHE": str(root / "cache"), "GRADIO_ANALYTICS_ENABLED": "False"}
    log = open(root / "server.log", "w")
    server = subprocess.Popen(
        # the workspace holds this module's studio folder and the session's tiny models and adapters
        [
            sys.executable,
            "-m",
            "app",
            "--port",
            str(port),
            "--workspace",
            str(tmp_path_factory.getbasetemp()),
            "--runs-dir",
            str(root / "runs"),
            "--config",
            str(root / "config.yaml"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}/"
    served = Served(url, root, tmp_path_factory.getbasetemp(), root / "config.yaml")
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        server.kill()
        pytest.fail("studio did not start: " + (root / "server.log").read_text())
    try:
        yield served
    finally:
        _stop_workers(root / "runs")
        server.terminate()
        server.wait(timeout=30)


def _stop_workers(runs: Path) -> None:
    """Never leave a worker training after the tests."""
    import json

    for run in runs.glob("*/status.json"):
        pid = json.loads(run.read_text()).get("pid")
        if pid:
            try:
                os.kill(pid, 15)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is missing: apt-get install chromium (scripts/test.sh does this)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture
def shoot():
    ARTIFACTS.mkdir(exist_ok=True)

    def take(page, name: str) -> Path:
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture(scope="module")
def open_page(browser, studio):
    """open_page(tab_name) -> a page on the studio, shown once the tab exists; closed after the module."""
    contexts = []

    def open_(tab: str, height: int = 1100):
        context = browser.new_context(viewport={"width": 1400, "height": height})
        contexts.append(context)
        page = context.new_page()
        page.goto(studio.url)
        page.get_by_role("tab", name=tab).wait_for(timeout=60_000)
        return page

    yield open_
    for context in contexts:
        context.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call" and report.failed:
        page = item.funcargs.get("page")  # every browser module names its page fixture `page`
        if page is not None:
            ARTIFACTS.mkdir(exist_ok=True)
            try:  # what the page showed when the test failed, for whoever reads the CI log
                page.screenshot(path=str(ARTIFACTS / f"FAILED-{item.name}.png"), full_page=True)
            except Exception as error:  # the test's own failure is what matters
                report.sections.append(("failure screenshot", f"could not be taken: {error}"))
    return report
