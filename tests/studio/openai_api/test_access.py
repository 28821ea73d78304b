"""Who may call the endpoint: bearer keys, the loopback rule, and how many requests it takes at once."""

from __future__ import annotations

import os
import threading
import time

import httpx
import openai
import pytest

from studio.errors import StudioError
from studio.openai_api import API_KEY_ENV, Access
from studio.openai_api.access import read_keys
from studio.openai_api.endpoint import MAX_IN_FLIGHT
from tests.studio.openai_api.conftest import QUESTION
from tests.support import wait_for

KEY = "k3y-" + "x" * 28


def test_with_a_key_set_only_requests_that_carry_it_are_answered(serve_endpoint):
    api = serve_endpoint(Access(keys=(KEY,)))
    with pytest.raises(openai.AuthenticationError, match="The API key is wrong"):
        api.client("wrong-key").models.list()
    bare = httpx.get(f"{api.url}/models")
    assert bare.status_code == 401 and bare.headers["www-authenticate"] == "Bearer"
    assert bare.json()["error"]["code"] == "invalid_api_key" and "Authorization: Bearer KEY" in bare.text
    assert [model.id for model in api.client(KEY).models.list()] == ["tiny-qwen2", "strong", "second"]
    reply = api.client(KEY).chat.completions.create(model="second", messages=QUESTION, max_tokens=3)
    assert reply.usage.completion_tokens <= 3


def test_without_a_key_only_requests_addressed_to_this_machine_are_answered(api):
    """A page on another domain that re-points its name at 127.0.0.1 (DNS rebinding) sends its own Host."""
    foreign = httpx.get(f"{api.url}/models", headers={"Host": "attacker.example:80"})
    assert foreign.status_code == 403 and "addressed to this machine only" in foreign.json()["error"]["message"]
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000"):
        assert httpx.get(f"{api.url}/models", headers={"Host": host}).status_code == 200


def test_beyond_loopback_a_key_is_required(monkeypatch):
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    exposed = Access.for_host("0.0.0.0")
    assert not exposed.ready
    with pytest.raises(StudioError, match="QLORA_STUDIO_API_KEY"):
        exposed.check_ready()
    monkeypatch.setenv(API_KEY_ENV, KEY)
    assert Access.for_host("0.0.0.0").ready and Access.for_host("0.0.0.0").keys == (KEY,)
    assert Access.for_host("127.0.0.1").loopback and not Access.for_host("192.168.1.5").loopback


def test_switching_on_beyond_loopback_without_a_key_is_refused(engine):
    from studio.openai_api import OpenAIEndpoint

    endpoint = OpenAIEndpoint(lambda: engine, Access(loopback=False))
    with pytest.raises(StudioError, match="only with a key"):
        endpoint.switch(True)
    assert not endpoint.enabled
    endpoint.access = Access(keys=(KEY,), loopback=False)
    endpoint.switch(True)
    assert endpoint.enabled


def test_keys_come_from_the_environment_or_a_file_never_a_flag(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text(f"# one per line\n{KEY}\n\n{KEY[::-1]}\n")
    os.chmod(keys, 0o600)
    assert read_keys(str(keys), environ={}) == (KEY, KEY[::-1])
    assert read_keys(None, environ={API_KEY_ENV: f" {KEY} "}) == (KEY,)
    assert read_keys(None, environ={}) == ()
    with pytest.raises(StudioError, match="at least 16 characters"):
        read_keys(None, environ={API_KEY_ENV: "short"})
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(StudioError, match="holds no key line"):
        read_keys(str(tmp_path / "empty"), environ={})
    with pytest.raises(StudioError, match="--api-key-file"):
        read_keys(str(tmp_path / "missing"), environ={})


def test_requests_wait_for_the_engine_and_too_many_are_told_to_retry(api):
    """While the engine answers someone else (here: held, as a long Chat answer holds it), requests wait their turn;
    beyond MAX_IN_FLIGHT the next is refused at once with 429, which OpenAI's clients retry after a pause."""
    results = []

    def ask(model: str) -> None:
        reply = api.client().chat.completions.create(model=model, messages=QUESTION, temperature=0, max_tokens=4)
        results.append(reply.model)

    with api.engine.selected(None):  # the Chat tab answering
        waiting = [threading.Thread(target=ask, args=(("strong", "second")[i % 2],)) for i in range(MAX_IN_FLIGHT)]
        for thread in waiting:
            thread.start()
        wait_for(lambda: api.endpoint._in_flight == MAX_IN_FLIGHT, timeout=30, what="requests in flight")
        with pytest.raises(openai.RateLimitError, match="The model is busy") as refused:
            ask("strong")
        assert refused.value.body["type"] == "rate_limit_error"
        time.sleep(0.5)
        assert results == []  # none answered while the engine was held
    for thread in waiting:
        thread.join(timeout=60)
    assert sorted(results) == sorted(("strong", "second") * (MAX_IN_FLIGHT // 2))
    wait_for(lambda: api.endpoint._in_flight == 0, timeout=30, what="every slot given back")


def test_a_client_that_leaves_mid_stream_frees_the_engine(api):
    body = {"model": "strong", "messages": QUESTION, "max_tokens": 2000, "temperature": 1, "stream": True}
    with httpx.stream("POST", f"{api.url}/chat/completions", json=body, timeout=60) as response:
        for index, _ in enumerate(response.iter_lines()):
            if index == 6:
                break  # the client hangs up after a few chunks
    # the whole answer would take about a minute on two cores; left alone, it ends at its next token
    wait_for(lambda: api.endpoint._in_flight == 0, timeout=20, what="the abandoned answer to end")
    with api.engine.selected(None):  # and the engine is free again: Chat (here, the test) gets it at once
        pass
