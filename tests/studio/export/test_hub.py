"""Hub upload, tested up to the network: huggingface_hub offers no local stand-in for the Hub, so the real
client is pointed at a local server that answers every request 401 (what the Hub says to a bad token)."""

import http.server
import json
import os
import subprocess
import sys
import threading

import pytest

from studio.adapters import read_adapter
from studio.api import Studio
from studio.export.hub import HubError, plan_upload
from studio.export.model_card import adapter_card
from tests.support import free_port

SECRET = "hf_studioTestSecretToken123"


def _cli(*args, **env):
    return subprocess.run(
        [sys.executable, "-m", "studio.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "0", **env},
    )


def test_an_adapter_goes_up_with_a_card_and_an_export_with_its_own(strong_adapter, tmp_path):
    upload = plan_upload(strong_adapter, card="# card")
    assert upload.kind == "adapter" and "adapter_config.json" in upload.files and "README.md" not in upload.files
    assert upload.card == "# card"
    card = adapter_card(read_adapter(strong_adapter), "me/strong")
    assert card.startswith("---\nlibrary_name: peft") and "PeftModel.from_pretrained" in card and '"me/strong"' in card
    export = tmp_path / "export"
    export.mkdir()
    (export / "model-q8_0.gguf").write_bytes(b"GGUF")
    (export / "README.md").write_text("# exported")
    assert plan_upload(export).card == "# exported" and set(plan_upload(export).files) == {"model-q8_0.gguf"}
    (export / "EXPORT_FAILED_CHECK.txt").write_text("bad")
    with pytest.raises(HubError, match="failed its reload check"):
        plan_upload(export)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("x")
    with pytest.raises(HubError, match="neither an adapter"):
        plan_upload(tmp_path / "notes")


def test_offline_the_upload_says_why_before_sending_anything(strong_adapter):
    result = _cli("push", str(strong_adapter), "--repo", "me/strong", HF_HUB_OFFLINE="1", HF_TOKEN=SECRET)
    assert result.returncode == 2 and "HF_HUB_OFFLINE" in result.stderr and SECRET not in result.stderr + result.stdout
    port = free_port()  # nothing listens there
    result = _cli(
        "push", str(strong_adapter), "--repo", "me/strong", HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_TOKEN=SECRET
    )
    assert result.returncode == 2 and "cannot reach 127.0.0.1" in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(HubError, match="owner/name"):
        Studio("runs").push_to_hub(str(strong_adapter), "no-slash", token=SECRET)


class _Refusing(http.server.BaseHTTPRequestHandler):
    seen: list = []

    def _refuse(self):
        self.seen.append((self.command, self.path, self.headers.get("authorization")))
        body = json.dumps({"error": "Invalid credentials in Authorization header"}).encode()
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_HEAD = _refuse

    def log_message(self, *args):
        pass


def test_the_real_client_sends_the_token_and_a_refusal_never_shows_it(strong_adapter):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = _cli(
            "push",
            str(strong_adapter),
            "--repo",
            "me/strong",
            HF_ENDPOINT=f"http://127.0.0.1:{server.server_address[1]}",
            HF_TOKEN=SECRET,
        )
    finally:
        server.shutdown()
    assert result.returncode == 2 and "HTTP 401" in result.stderr and "Check the token" in result.stderr
    assert SECRET not in result.stderr + result.stdout
    create = [auth for method, path, auth in _Refusing.seen if (method, path) == ("POST", "/api/repos/create")]
    assert create == [f"Bearer {SECRET}"]  # the token from the environment reached the request, and nothing else did
