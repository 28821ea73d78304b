"""Network exposure is a decision: no silent open server, credentials never on a command line,
failed logins slow down."""

import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from support import free_port


def _serve(tmp_path, *args, env=None, module=("-m", "app")):
    port = free_port()
    environment = {
        **os.environ,
        "GRADIO_ANALYTICS_ENABLED": "False",
        "QLORA_STUDIO_CACHE": str(tmp_path / "cache"),
        **(env or {}),
    }
    process = subprocess.Popen(
        [sys.executable, *module, "--port", str(port), "--workspace", str(tmp_path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment,
    )
    return process, f"http://127.0.0.1:{port}/"


def _wait_until_served(url, process, timeout=90.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "config", timeout=2)
            return
        except urllib.error.HTTPError:
            return  # answering, even if with 401
        except OSError:
            assert process.poll() is None, process.stdout.read()
            time.sleep(0.5)
    pytest.fail("the server did not start")


def _login(url, user, password) -> tuple[int, float]:
    data = urllib.parse.urlencode({"username": user, "password": password}).encode()
    started = time.time()
    try:
        code = urllib.request.urlopen(urllib.request.Request(url + "login", data=data), timeout=120).status
    except urllib.error.HTTPError as error:
        code = error.code
    return code, time.time() - started


def test_a_network_address_without_a_login_refuses_to_start(tmp_path):
    process, _ = _serve(tmp_path, "--host", "0.0.0.0")
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 2 and "QLORA_STUDIO_AUTH" in out and "--allow-unauthenticated" in out


def test_credentials_come_from_the_environment_and_failed_logins_slow_down(tmp_path):
    process, url = _serve(tmp_path, env={"QLORA_STUDIO_AUTH": "alice:s3cret-pw"})
    try:
        _wait_until_served(url, process)
        assert b"s3cret-pw" not in Path(f"/proc/{process.pid}/cmdline").read_bytes()
        waits = [_login(url, "alice", "wrong") for _ in range(5)]
        assert all(code == 400 for code, _ in waits)
        assert waits[0][1] < 1.0 and waits[4][1] >= 1.9  # 0, 0.25, 0.5, 1, 2 s: each failure doubles the wait
        code, _ = _login(url, "alice", "s3cret-pw")
        assert code == 200
        assert _login(url, "alice", "wrong")[1] < 1.0  # a success clears the record
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_webui_moves_a_command_line_password_out_of_sight(tmp_path):
    auth_file = tmp_path / "users"
    auth_file.write_text("# user:password\nbob:from-file\n")
    auth_file.chmod(0o600)
    process, url = _serve(
        tmp_path,
        "--auth",
        "carol:argv-pw",
        "--auth-file",
        str(auth_file),
        "--host",
        "0.0.0.0",
        module=("-m", "studio.cli", "webui"),
    )
    try:
        _wait_until_served(url, process)
        command_line = Path(f"/proc/{process.pid}/cmdline").read_bytes()  # the same process, after exec
        assert b"argv-pw" not in command_line and b"-m\x00app" in command_line
        assert _login(url, "bob", "from-file")[0] == 200 and _login(url, "carol", "argv-pw")[0] == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
