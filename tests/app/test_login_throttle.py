"""The login throttle's guarantees one by one, in process with short delays (0.15 s doubling to 1.2 s);
tests/app/test_serving.py replays the same attacks over HTTP against a real server with the real delays."""

import asyncio
import gc
import time

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse

from app.login_throttle import BROWSER_COOKIE, LoginThrottle

FIRST, MAX = 0.15, 1.2  # long enough that "at once" (PROMPT) stays apart from the first wait on a busy machine
SLACK = 0.3  # scheduling on a busy machine
PROMPT = 0.12  # "answered at once"


@pytest.fixture(autouse=True)
def no_collection_pause():
    """A full garbage collection of the suite's heap (0.2-0.7 s measured) would stretch whichever wait it lands in
    past SLACK or PROMPT: one now, and none while these tests read the clock."""
    gc.collect()
    gc.disable()
    yield
    gc.enable()


class FakeGradio:
    """Gradio's POST /login as the throttle sees it (gradio/routes.py `login`): 200 for alice's password, else 400."""

    def __init__(self):
        self.forms: list[dict] = []

    async def __call__(self, scope, receive, send):
        form = dict(await Request(scope, receive).form())
        self.forms.append(form)
        right = form.get("username", "").strip() == "alice" and form.get("password") == "right"
        answer = JSONResponse({"success": True}) if right else JSONResponse({"detail": "Incorrect credentials."}, 400)
        await answer(scope, receive, send)


def _throttle(**kwargs) -> LoginThrottle:
    return LoginThrottle(FakeGradio(), first_delay_s=FIRST, max_delay_s=MAX, **kwargs)


async def _attempt(throttle, user, password="wrong", address="10.0.0.1", cookie=None, multipart=False):
    transport = httpx.ASGITransport(app=throttle, client=(address, 50000))
    fields = {"username": user, "password": password}
    form = {"files": {k: (None, v) for k, v in fields.items()}} if multipart else {"data": fields}
    headers = {"Cookie": f"{BROWSER_COOKIE}={cookie}"} if cookie else {}
    async with httpx.AsyncClient(transport=transport, base_url="http://studio") as client:
        started = time.monotonic()
        response = await client.post("/login", headers=headers, **form)
        return response, time.monotonic() - started


async def _at_once(throttle, attempts: list[dict]) -> list[tuple[int, float]]:
    """(status, seconds after the first was sent) of attempts sent together."""
    started = time.monotonic()

    async def one(attempt):
        response, _ = await _attempt(throttle, **attempt)
        return response.status_code, time.monotonic() - started

    return await asyncio.gather(*(one(a) for a in attempts))


def _spaced_like_failures(answers: list[tuple[int, float]]) -> None:
    """Attempts sent at once: checked 0, 1, 3 and 7 first waits after (each as if the ones before failed); the
    next would wait 15, more than the maximum of 8, so it and all after it are refused at once."""
    checked = sorted(seconds for code, seconds in answers if code == 400)
    refused = [seconds for code, seconds in answers if code == 429]
    assert len(checked) == 4 and len(refused) == len(answers) - 4, answers
    for seconds, expected in zip(checked, (0, FIRST, 3 * FIRST, 7 * FIRST), strict=True):
        assert expected - 0.01 <= seconds <= expected + SLACK, answers
    assert max(refused) < PROMPT + 0.1 and max(checked) <= MAX + SLACK


def test_each_failure_doubles_the_wait_and_a_success_clears_it():
    async def scenario():
        throttle = _throttle()
        waits = [(await _attempt(throttle, "alice"))[1] for _ in range(6)]
        for seconds, expected in zip(waits, (0, FIRST, 2 * FIRST, 4 * FIRST, MAX, MAX), strict=True):
            assert expected - 0.01 <= seconds <= expected + SLACK, waits
        response, _ = await _attempt(throttle, "alice", "right")
        assert response.status_code == 200
        _, seconds = await _attempt(throttle, "alice")
        assert seconds < PROMPT  # the success cleared both sources it was held by

    asyncio.run(scenario())


def test_attempts_sent_at_once_from_one_address_gain_nothing():
    async def scenario():
        throttle = _throttle()
        answers = await _at_once(throttle, [{"user": f"user{n}"} for n in range(10)])
        _spaced_like_failures(answers)
        # the source now waits the maximum: of two more at once, one takes that turn, the other is told when
        (first, _), (second, seconds) = await asyncio.gather(_attempt(throttle, "x"), _attempt(throttle, "y"))
        assert first.status_code == 400 and second.status_code == 429 and seconds < PROMPT
        assert int(second.headers["Retry-After"]) >= 1 and "try again in" in second.json()["detail"]

    asyncio.run(scenario())


def test_one_name_is_guessed_slowly_from_any_number_of_addresses():
    async def scenario():
        throttle = _throttle()
        answers = await _at_once(throttle, [{"user": "alice", "address": f"10.1.0.{n}"} for n in range(10)])
        _spaced_like_failures(answers)
        # IPv6 addresses of one /64 are one source: a machine holds its whole prefix
        answers = await _at_once(throttle, [{"user": f"u{n}", "address": f"2001:db8::{n:x}"} for n in range(10)])
        _spaced_like_failures(answers)

    asyncio.run(scenario())


def test_a_known_browser_is_held_only_by_its_own_failures():
    async def scenario():
        throttle = _throttle()
        response, _ = await _attempt(throttle, "alice", "right")
        cookie = response.cookies[BROWSER_COOKIE]
        header = response.headers["set-cookie"]
        assert "HttpOnly" in header and "SameSite=Lax" in header and "Secure" not in header  # plain HTTP here
        # a guesser at alice's name from alice's own address (a NAT): both sources are slowed down ...
        waits = [(await _attempt(throttle, "alice"))[1] for _ in range(5)]
        assert waits[-1] >= 4 * FIRST - 0.01
        # ... and alice's browser goes straight in, from there or anywhere
        for address in ("10.0.0.1", "10.9.9.9"):
            response, seconds = await _attempt(throttle, "alice", "right", address=address, cookie=cookie)
            assert response.status_code == 200 and seconds < PROMPT
        # the cookie is alice's: for another name, or altered, it counts for nothing
        browser, _, signature = cookie.partition(".")
        for user, value in (("bob", cookie), ("alice", f"{browser}.{signature[::-1]}"), ("alice", f"x.{signature}")):
            _, seconds = await _attempt(throttle, user, cookie=value)
            assert seconds >= 4 * FIRST - 0.01, (user, value)
        # a known browser that fails is slowed by its own record
        waits = [(await _attempt(throttle, "alice", cookie=cookie, address="10.9.9.9"))[1] for _ in range(3)]
        assert waits[0] < PROMPT and waits[2] >= 2 * FIRST - 0.01

    asyncio.run(scenario())


def test_gradio_reads_the_form_the_throttle_read():
    async def scenario():
        throttle = _throttle()
        # the page posts multipart: its user name is read too (three at once from three addresses are spaced)
        attempts = [{"user": " alice ", "address": f"10.2.0.{n}", "multipart": True} for n in range(3)]
        answers = sorted(seconds for _, seconds in await _at_once(throttle, attempts))
        assert answers[2] >= 3 * FIRST - 0.01, answers
        assert throttle.app.forms == [{"username": " alice ", "password": "wrong"}] * 3
        response, _ = await _attempt(throttle, "alice", "right", address="10.3.0.1", multipart=True)
        assert response.status_code == 200 and response.json() == {"success": True}

    asyncio.run(scenario())


def test_an_oversized_form_never_reaches_gradio():
    async def scenario():
        throttle = _throttle()
        response, _ = await _attempt(throttle, "alice", password="x" * 100_000)
        assert response.status_code == 413 and throttle.app.forms == []

    asyncio.run(scenario())


def test_what_is_remembered_stays_bounded():
    async def scenario():
        throttle = _throttle(max_sources=50)
        for n in range(100):  # fresh addresses and names: no wait, two sources each
            await _attempt(throttle, f"name{n}", address=f"10.4.{n // 250}.{n % 250}")
        assert len(throttle.sources) <= 50
        throttle = _throttle()
        response, _ = await _attempt(throttle, "alice", "right")
        assert response.status_code == 200 and not throttle.sources  # nothing against anyone: nothing kept

    asyncio.run(scenario())
