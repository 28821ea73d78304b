"""A judge behind an OpenAI-compatible API on a free loopback port: the counterparty of the endpoint judge.

It speaks the two routes a judge client uses (GET /v1/models, POST /v1/chat/completions) and records every
request, the most it had in flight at once and the models asked for. Its verdict is a rule the tests can
predict: the longer answer wins (A or B on the first line, a reason on the second). /moved/... answers with a
redirect to /v1/..., so a test sees whether a client follows it.
"""

from __future__ import annotations

import json
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "stub-judge"
_ANSWERS = re.compile(r"Answer A:\n(?P<a>.*)\n\nAnswer B:\n(?P<b>.*)\n\nWhich answer", re.DOTALL)  # the default prompt


@dataclass
class Seen:
    paths: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextmanager
def openai_stub(status: int = 200, delay_s: float = 0.05):
    """Yields (base URL ending in /v1, Seen); `status` other than 200 makes every completion fail with it."""
    seen = Seen()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(seen, status, delay_s))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    finally:
        server.shutdown()
        server.server_close()


def _handler(seen: Seen, status: int, delay_s: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet: pytest shows the test's own output
            pass

        def do_GET(self) -> None:
            seen.paths.append(self.path)
            if self.path.startswith("/moved/"):
                return self._redirect()
            self._json(200, {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "tests"}]})

        def do_POST(self) -> None:
            seen.paths.append(self.path)
            seen.keys.append(self.headers.get("Authorization", ""))
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            if self.path.startswith("/moved/"):
                return self._redirect()
            if status != 200:
                return self._json(status, {"error": {"message": "stub refuses", "type": "invalid_request_error"}})
            with seen.lock:
                seen.models.append(body["model"])
                seen.in_flight += 1
                seen.most_in_flight = max(seen.most_in_flight, seen.in_flight)
            time.sleep(delay_s)  # long enough for concurrent requests to overlap
            with seen.lock:
                seen.in_flight -= 1
            self._json(200, _completion(body["messages"][-1]["content"], body["model"]))

        def _redirect(self) -> None:
            self.send_response(307)
            self.send_header("Location", self.path.replace("/moved/", "/v1/", 1))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _json(self, code: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _completion(prompt: str, model: str) -> dict:
    match = _ANSWERS.search(prompt)
    a, b = (match.group("a"), match.group("b")) if match else ("", "")
    verdict = "TIE" if len(a) == len(b) else "A" if len(a) > len(b) else "B"
    message = {"role": "assistant", "content": f"{verdict}\nthe longer answer says more"}
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
