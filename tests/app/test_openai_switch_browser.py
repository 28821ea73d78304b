"""The API switch on a web server that listens beyond loopback (0.0.0.0, reached here through 127.0.0.1): with a key
the API answers only requests that carry it, its own login apart from the page's; without one it will not turn on."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager

import httpx
import openai
import pytest

from tests.support import free_port

KEY = "browser-test-key-" + "7" * 20


@contextmanager
def _exposed_studio(tmp_path, key: str | None):
    """`python -m app --host 0.0.0.0 --allow-unauthenticated`, with QLORA_STUDIO_API_KEY=`key` when given."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "QLORA_STUDIO_API_KEY"}
    env |= {"GRADIO_ANALYTICS_ENABLED": "False", "QLORA_STUDIO_CACHE": str(tmp_path / "cache")}
    if key:
        env["QLORA_STUDIO_API_KEY"] = key
    command = ["-m", "app", "--host", "0.0.0.0", "--allow-unauthenticated", "--port", str(port)]
    command += ["--workspace", str(tmp_path), "--runs-dir", str(tmp_path / "runs")]
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen([sys.executable, *command], stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail("studio did not start: " + (tmp_path / "server.log").read_text())
            time.sleep(0.5)
    try:
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _switch_on(browser, url: str):
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    page.goto(url)
    page.get_by_role("tab", name="Chat").click()
    page.locator("#qs-chat-api-box").get_by_text("OpenAI-compatible API").click()
    page.locator("#qs-chat-api input").click()  # not check(): a refused switch flips back at once
    return context, page


def test_beyond_loopback_the_api_needs_its_key(tmp_path, browser, shoot):
    with _exposed_studio(tmp_path, KEY) as url:
        context, page = _switch_on(browser, url)
        info = page.locator("#qs-chat-api-info")
        info.get_by_text(re.compile("On at")).wait_for(timeout=30_000)
        assert "Authorization: Bearer KEY" in info.inner_text()
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{url}v1", api_key="not-the-key", max_retries=0).models.list()
        assert httpx.get(f"{url}v1/models").status_code == 401
        listed = openai.OpenAI(base_url=f"{url}v1", api_key=KEY, max_retries=0).models.list()
        assert listed.data == []  # the page has loaded no model yet: the key alone gets that far
        shoot(page, "openai-endpoint-key-needed")
        context.close()


def test_beyond_loopback_without_a_key_it_stays_off_and_says_why(tmp_path, browser):
    with _exposed_studio(tmp_path, None) as url:
        context, page = _switch_on(browser, url)
        info = page.locator("#qs-chat-api-info")
        info.get_by_text(re.compile("QLORA_STUDIO_API_KEY")).wait_for(timeout=30_000)
        assert not page.locator("#qs-chat-api input").is_checked()
        assert httpx.get(f"{url}v1/models").status_code == 503
        context.close()
