"""Failed logins slow down, per address and per user name; a browser that has logged in before is not held by others.

An ASGI middleware in front of Gradio's POST /login (gradio/routes.py `login`: 200 on success, 400 on a
wrong password). It reads the form (the page sends multipart, scripts often urlencoded), decides which
*sources* the attempt is held by, waits for their turn, then replays the body to Gradio.

Sources: a client address (an IPv6 one by its /64, which one machine usually holds whole), a user name,
and a known browser. An attempt from a new browser is held by its address and by the user name it tries.
One from a browser that has logged in as that same user before (a cookie this middleware signs on the
success, with a key made at start, so a restart forgets every browser) is held by that browser alone.

What is guaranteed, with the defaults (first delay 0.25 s, at most 30 s):
- A source's attempts are checked at least a delay apart, and the delay doubles with each failure in a
  row: 0.25 s, 0.5 s, 1 s, ... 30 s. Attempts sent at once are spaced as if each earlier one failed, so
  concurrency gains nothing. A success clears the sources it was held by; a source is forgotten after
  15 minutes without attempts.
- No attempt waits more than 30 s: one that would is refused at once (429 with Retry-After), which is not
  a failure and takes no turn. No line builds up in front of anyone.
- One user name gets about one guess per 30 s in all, however many addresses the guesses come from.
- A browser the user has logged in from is never slowed by anyone else's failures: not by guesses at that
  name from anywhere, nor by a client sharing the user's address (a NAT, or a proxy that sets no
  X-Forwarded-For). A stolen cookie is worth no more than that browser's own turns.
- A new browser, while someone guesses at the same name, competes with the guesser for those turns: it is
  answered within 30 s or told at once when to try again (Gradio's login page shows nothing for a 429;
  trying again works).
- The address is the connection's, or what X-Forwarded-For says when the connection comes from a proxy
  named by --forwarded-allow-ips (uvicorn rewrites it before this middleware runs; studio.serving).
- At most `max_sources` sources are remembered (memory stays bounded); the least recently tried go first.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import math
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import JSONResponse

LOGIN_PATHS = ("/login", "/login/")
BROWSER_COOKIE = "qlora-studio-browser"
BROWSER_COOKIE_MAX_AGE_S = 30 * 24 * 3600  # the signing key dies with the process anyway
MAX_FORM_BYTES = 64 * 1024  # a login form is a few hundred bytes


@dataclass
class _Source:
    failures: int = 0  # in a row
    pending: int = 0  # attempts admitted and not answered yet
    free_at: float = 0.0  # monotonic time at which the next attempt may be checked
    last: float = field(default_factory=time.monotonic)


class LoginThrottle:
    def __init__(
        self,
        app,
        first_delay_s: float = 0.25,
        max_delay_s: float = 30.0,
        forget_after_s: float = 900.0,
        max_sources: int = 100_000,
    ):
        self.app = app
        self.first_delay_s, self.max_delay_s, self.forget_after_s = first_delay_s, max_delay_s, forget_after_s
        self.max_sources = max_sources
        self.sources: OrderedDict[str, _Source] = OrderedDict()  # least recently tried first
        self._key = secrets.token_bytes(32)  # signs browser cookies

    def delay_after(self, failures: int) -> float:
        return 0.0 if failures == 0 else min(self.max_delay_s, self.first_delay_s * 2 ** (failures - 1))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") not in LOGIN_PATHS:
            return await self.app(scope, receive, send)
        body = await _read_body(receive)
        if body is None:
            return await _refuse(scope, receive, send, 413, "A login form is a few hundred bytes; this one is not.")
        user = await _user_name(scope, body)
        browser = self._known_browser(scope, user)
        keys = [f"browser:{browser}"] if browser else [f"address:{_address(scope)}", f"user:{_digest(user)}"]
        now = time.monotonic()
        sources = [self._source(key, now) for key in keys]
        start = max(now, *(source.free_at for source in sources))
        if start - now > self.max_delay_s:
            self._drop_clean(keys)
            retry = max(1, math.ceil(start - now - self.max_delay_s))  # when a turn is within max_delay_s again
            message = f"Too many failed logins from this address or for this user name; try again in {retry} s."
            return await _refuse(scope, receive, send, 429, message, {"Retry-After": str(retry)})
        for source in sources:
            source.pending += 1
            source.free_at = start + self.delay_after(source.failures + source.pending)  # as if all before failed
        code = None
        try:
            await asyncio.sleep(start - now)
            code = await self._answer(scope, body, receive, send, user, browser)
        finally:
            self._settle(keys, sources, code)

    async def _answer(self, scope, body: bytes, receive, send, user: str, browser: str | None) -> int | None:
        """Gradio's answer to the replayed form (its status); a success tells the browser it is known."""
        status: dict[str, int] = {}

        async def watch(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                if message["status"] == 200:
                    cookie = self._browser_cookie(scope, user, browser or secrets.token_urlsafe(16))
                    message = {**message, "headers": [*message.get("headers", []), cookie]}
            await send(message)

        await self.app(scope, _replay(body, receive), watch)
        return status.get("code")

    def _settle(self, keys: list[str], sources: list[_Source], code: int | None) -> None:
        now = time.monotonic()
        for source in sources:
            source.pending -= 1
            source.last = now
            if code == 200:
                source.failures, source.free_at = 0, now
            elif code is not None:  # None: the client left before its turn, so nothing was tried
                source.failures += 1
                source.free_at = max(source.free_at, now + self.delay_after(source.failures))
        for key in keys:
            if key in self.sources:
                self.sources.move_to_end(key)
        self._drop_clean(keys)

    def _source(self, key: str, now: float) -> _Source:
        self._forget(now)
        source = self.sources.pop(key, None) or _Source()
        self.sources[key] = source  # now the most recently tried
        source.last = now
        return source

    def _forget(self, now: float) -> None:
        """Sources idle for forget_after_s go, and the least recently tried while there are too many."""
        while self.sources:
            key, oldest = next(iter(self.sources.items()))
            if oldest.pending or (now - oldest.last <= self.forget_after_s and len(self.sources) < self.max_sources):
                return
            del self.sources[key]

    def _drop_clean(self, keys: list[str]) -> None:
        """A source with no failures and nothing pending is the same as none: keep only the others."""
        for key in keys:
            source = self.sources.get(key)
            if source is not None and source.failures == 0 and source.pending == 0:
                del self.sources[key]

    def _known_browser(self, scope, user: str) -> str | None:
        """The browser's id when its cookie says that it has logged in as `user` (signed by this process)."""
        browser, _, signature = Request(scope).cookies.get(BROWSER_COOKIE, "").partition(".")
        if browser and hmac.compare_digest(signature.encode(), self._sign(browser, user).encode()):
            return browser
        return None

    def _sign(self, browser: str, user: str) -> str:
        # the id never holds "\0", so (browser, user) pairs cannot be confused
        return hmac.new(self._key, f"{browser}\0{user}".encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()

    def _browser_cookie(self, scope, user: str, browser: str) -> tuple[bytes, bytes]:
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        value = f"{browser}.{self._sign(browser, user)}"
        attributes = f"Max-Age={BROWSER_COOKIE_MAX_AGE_S}; Path=/; HttpOnly; SameSite=Lax{secure}"
        return b"set-cookie", f"{BROWSER_COOKIE}={value}; {attributes}".encode()


def _address(scope) -> str:
    host = (scope.get("client") or ("unknown",))[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if ip.version == 6 and ip.ipv4_mapped:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False)) if ip.version == 6 else str(ip)


def _digest(user: str) -> str:
    """A user name's key: any name may be tried, and a long one must not cost memory."""
    return hashlib.sha256(user.encode("utf-8", "surrogatepass")).hexdigest()[:32]


async def _read_body(receive) -> bytes | None:
    """The whole request body; None when it is larger than any login form, or the client left."""
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        body += message.get("body", b"")
        if len(body) > MAX_FORM_BYTES:
            return None
        if not message.get("more_body", False):
            return body


def _replay(body: bytes, receive):
    """A receive that gives the body already read, then whatever the client sends next (its disconnect)."""
    replayed = False

    async def again():
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return again


async def _user_name(scope, body: bytes) -> str:
    """The form's user name as Gradio reads it (stripped); empty when the form cannot be read."""

    async def nothing_more():
        return {"type": "http.disconnect"}

    try:
        async with Request(scope, _replay(body, nothing_more)).form(max_files=0, max_fields=10) as form:
            name = form.get("username")
    except Exception:  # a malformed form (Gradio refuses it too): it is held by the empty name meanwhile
        return ""
    return name.strip() if isinstance(name, str) else ""


async def _refuse(scope, receive, send, status: int, message: str, headers: dict | None = None) -> None:
    await JSONResponse({"detail": message}, status, headers)(scope, receive, send)
