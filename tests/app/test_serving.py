"""Network exposure is a decision: no silent open server, credentials never on a command line,
failed logins slow down, and only a named proxy may say which address a client has."""

import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app.login_throttle import BROWSER_COOKIE
from studio.serving import ServeOptions, add_serve_flags, options_from, to_argv, trusted_proxies
from tests.support import free_port

pytestmark = pytest.mark.server  # a studio served over HTTP, driven as a script would


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


def _login(url, user, password, headers=None) -> tuple[int, float]:
    code, seconds, _ = _login_answer(url, user, password, headers)
    return code, seconds


def _login_answer(url, user, password, headers=None) -> tuple[int, float, str]:
    """(status, seconds, the browser cookie the studio set) of one attempt."""
    data = urllib.parse.urlencode({"username": user, "password": password}).encode()
    started = time.time()
    try:
        with urllib.request.urlopen(urllib.request.Request(url + "login", data=data, headers=headers or {})) as answer:
            code, cookies = answer.status, answer.headers.get_all("Set-Cookie") or []
    except urllib.error.HTTPError as error:
        code, cookies = error.code, []
    browser = [c.split(";")[0] for c in cookies if c.startswith(BROWSER_COOKIE + "=")]
    return code, time.time() - started, browser[0] if browser else ""


def _at_once(url, attempts: list[tuple[str, dict]]) -> list[tuple[int, float]]:
    """(status, seconds after the first was sent) of wrong passwords for (user, headers) sent together."""
    started = time.time()

    def one(attempt):
        code, _ = _login(url, attempt[0], "wrong", attempt[1])
        return code, time.time() - started

    with ThreadPoolExecutor(len(attempts)) as pool:
        return list(pool.map(one, attempts))


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


def test_a_forged_x_forwarded_for_does_not_escape_the_throttle(tmp_path):
    """Issue 25: 30 wrong passwords at once, each claiming another address (and name), were all answered at once."""
    process, url = _serve(tmp_path, env={"QLORA_STUDIO_AUTH": "alice:s3cret-pw"})
    try:
        _wait_until_served(url, process)
        answers = _at_once(url, [(f"user{n}", {"X-Forwarded-For": f"203.0.113.{n}"}) for n in range(30)])
        checked = sorted(seconds for code, seconds in answers if code == 400)
        refused = [seconds for code, seconds in answers if code == 429]
        # one address: checked 0, 0.25, 0.75, 1.75, ... s after, as if each one before failed; a turn further
        # than 30 s away is refused at once, so no one waits longer
        assert len(checked) + len(refused) == 30 and len(checked) <= 7, answers
        for seconds, earliest in zip(checked, (0, 0.25, 0.75, 1.75, 3.75, 7.75, 15.75)):
            assert seconds >= earliest - 0.1, answers
        assert max(refused) < 5 and max(checked) < 35
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_named_proxy_says_who_the_client_is_and_a_known_browser_is_not_held(tmp_path):
    process, url = _serve(
        tmp_path,
        "--forwarded-allow-ips",
        "127.0.0.1",
        env={"QLORA_STUDIO_AUTH": "alice:s3cret-pw"},
        module=("-m", "studio.cli", "webui"),
    )
    try:
        _wait_until_served(url, process)
        assert b"--forwarded-allow-ips\x00127.0.0.1" in Path(f"/proc/{process.pid}/cmdline").read_bytes()
        proxied = lambda address: {"X-Forwarded-For": address}  # noqa: E731 -- what the proxy on 127.0.0.1 says
        # clients behind the proxy are told apart: five strangers failing once each are not slowed
        waits = [_login(url, f"user{n}", "wrong", proxied(f"198.51.100.{n}"))[1] for n in range(5)]
        assert max(waits) < 1.0
        code, _, browser = _login_answer(url, "alice", "s3cret-pw", proxied("192.0.2.7"))
        assert code == 200 and browser
        # a guesser at alice's name from ever new addresses is slowed by the name ...
        waits = [_login(url, "alice", "wrong", proxied(f"198.51.100.{100 + n}"))[1] for n in range(5)]
        assert waits[4] >= 1.9
        # ... and alice's own browser goes straight in, while a new one waits its turn (4 s now)
        code, seconds = _login(url, "alice", "s3cret-pw", {**proxied("192.0.2.7"), "Cookie": browser})
        assert code == 200 and seconds < 1.0
        code, seconds = _login(url, "alice", "s3cret-pw", proxied("192.0.2.8"))
        assert code == 200 and seconds >= 3.5
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.parametrize("value", ["proxy.example", "*", "10.0.0.300"])
def test_forwarded_allow_ips_takes_addresses_and_networks_only(tmp_path, value):
    process, _ = _serve(tmp_path, "--forwarded-allow-ips", value)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 2 and "--forwarded-allow-ips" in out and "not an IP address or network" in out


def test_serve_flags_round_trip():
    import argparse

    parser = argparse.ArgumentParser()
    add_serve_flags(parser)
    assert options_from(parser.parse_args([])) == ServeOptions()
    options = ServeOptions(
        host="0.0.0.0",
        read_only_dir=["/models"],
        forwarded_allow_ips="127.0.0.1,10.0.0.0/8",
        judge_endpoint=["http://127.0.0.1:8000/v1", "http://10.0.0.2/v1"],
        api_key_file="/etc/qlora-studio/api-keys",
    )
    assert options_from(parser.parse_args(to_argv(options))) == options
    assert trusted_proxies(ServeOptions()) == ""  # by default no one's X-Forwarded-For is believed
    assert trusted_proxies(options_from(parser.parse_args(["--forwarded-allow-ips", " ::1, 10.1.2.3/8"]))) == (
        "::1,10.0.0.0/8"
    )
