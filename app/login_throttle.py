"""Failed logins slow down: each failure from a client doubles the wait before its next attempt is answered.

An ASGI middleware in front of Gradio's POST /login. Attempts from one client are answered one
at a time, so firing many at once does not get around the delay. A success clears the client's
record; a record also expires after `forget_after_s` without attempts.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

LOGIN_PATHS = ("/login", "/login/")


@dataclass
class _Client:
    failures: int = 0
    last: float = field(default_factory=time.monotonic)
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)


class LoginThrottle:
    def __init__(self, app, first_delay_s: float = 0.25, max_delay_s: float = 30.0, forget_after_s: float = 900.0):
        self.app = app
        self.first_delay_s, self.max_delay_s, self.forget_after_s = first_delay_s, max_delay_s, forget_after_s
        self.clients: dict[str, _Client] = {}

    def delay_after(self, failures: int) -> float:
        return 0.0 if failures == 0 else min(self.max_delay_s, self.first_delay_s * 2 ** (failures - 1))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") not in LOGIN_PATHS:
            return await self.app(scope, receive, send)
        client = self._client((scope.get("client") or ("unknown",))[0])
        async with client.turn:
            await asyncio.sleep(self.delay_after(client.failures))
            status: dict[str, int] = {}

            async def watch(message):
                if message["type"] == "http.response.start":
                    status["code"] = message["status"]
                await send(message)

            await self.app(scope, receive, watch)
            client.failures = 0 if status.get("code") == 200 else client.failures + 1
            client.last = time.monotonic()

    def _client(self, address: str) -> _Client:
        now = time.monotonic()
        for stale in [a for a, c in self.clients.items() if now - c.last > self.forget_after_s and not c.turn.locked()]:
            del self.clients[stale]
        return self.clients.setdefault(address, _Client())
