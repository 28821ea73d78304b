"""The studio served for a benchmark: `python -m app` on a free localhost port, its log in the workspace."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def serve(workspace: Path, config: Path, timeout: float = 120.0) -> tuple[subprocess.Popen, str]:
    """Start the studio on `workspace` with `config` as its defaults; (server process, page URL) once it answers."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "app", "--port", str(port), "--workspace", str(workspace), "--config", str(config)],
        stdout=open(workspace / "server.log", "w"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"},
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return server, url
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit("the studio did not start: " + (workspace / "server.log").read_text()[-2000:])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
