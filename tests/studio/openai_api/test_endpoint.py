"""The endpoint answers OpenAI's own client as the engine answers Chat: each adapter by its name, in turn."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from studio.config import GenerationConfig
from tests.studio.openai_api.conftest import GREEDY, QUESTION
from tests.support import make_gguf


def _greedy(client, model: str, **options) -> openai.types.chat.ChatCompletion:
    return client.chat.completions.create(
        model=model, messages=QUESTION, **{"temperature": 0, "max_tokens": 12, **options}
    )


def test_models_are_the_base_and_each_loaded_adapter(api):
    client = api.client()
    assert [model.id for model in client.models.list()] == ["tiny-qwen2", "strong", "second"]
    assert client.models.retrieve("second").owned_by == "tiny-qwen2"
    with pytest.raises(openai.NotFoundError, match="not loaded here"):
        client.models.retrieve("third")
    api.engine.unload_adapter("second")  # what is loaded is what is offered, at once
    assert [model.id for model in client.models.list()] == ["tiny-qwen2", "strong"]


def test_two_adapters_in_turn_answer_as_the_engine_does(api):
    client = api.client()
    answers = {}
    for model, adapter in (("strong", "strong"), ("second", "second"), ("tiny-qwen2", None), ("strong", "strong")):
        reply = _greedy(client, model)
        expected = api.engine.answer(QUESTION, adapter, GREEDY)
        assert reply.choices[0].message.content == expected.text and reply.model == model
        assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 12
        answers[model] = expected.text
    assert len(set(answers.values())) == 3  # each model answers its own way
    with pytest.raises(openai.NotFoundError, match="'third' is not loaded here. Loaded: tiny-qwen2, strong, second"):
        _greedy(client, "third")


def test_a_streamed_answer_is_the_whole_answer_in_chunks(api):
    client = api.client()
    whole = _greedy(client, "second")
    chunks = list(_greedy(client, "second", stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1  # streamed, not all at the end
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens
    with httpx.stream("POST", f"{api.url}/chat/completions", json=_body("strong", stream=True)) as response:
        lines = [line for line in response.iter_lines() if line]
    assert response.headers["content-type"].startswith("text/event-stream")
    assert all(line.startswith("data: ") for line in lines) and lines[-1] == "data: [DONE]"


def test_a_text_completion_continues_the_prompt_as_it_is(api, tiny_tokenizer):
    client = api.client()
    reply = client.completions.create(model="strong", prompt="你好", max_tokens=6, temperature=0)
    assert reply.object == "text_completion" and reply.choices[0].finish_reason == "length"
    assert reply.usage.prompt_tokens == len(tiny_tokenizer.encode("你好"))  # no chat template around it
    streamed = client.completions.create(model="strong", prompt="你好", max_tokens=6, temperature=0, stream=True)
    assert "".join(chunk.choices[0].text for chunk in streamed if chunk.choices) == reply.choices[0].text
    default = client.completions.create(model="strong", prompt="你好", temperature=0)
    assert default.usage.completion_tokens == 16  # OpenAI's default length for a text completion


def test_a_stop_string_ends_the_answer_before_it(api):
    client = api.client()
    whole = client.chat.completions.create(model="strong", messages=QUESTION, temperature=0, max_tokens=30)
    text = whole.choices[0].message.content
    start = next(
        i for i in range(3, len(text) - 2) if "\ufffd" not in text[i : i + 2] and text.find(text[i : i + 2]) == i
    )
    stop = text[start : start + 2]
    cut = client.chat.completions.create(model="strong", messages=QUESTION, temperature=0, max_tokens=30, stop=[stop])
    assert cut.choices[0].message.content == text[:start] and cut.choices[0].finish_reason == "stop"
    streamed = client.chat.completions.create(
        model="strong", messages=QUESTION, temperature=0, max_tokens=30, stop=stop, stream=True
    )
    chunks = [chunk.choices[0] for chunk in streamed if chunk.choices]
    assert "".join(c.delta.content or "" for c in chunks) == text[:start] and chunks[-1].finish_reason == "stop"


def test_a_seed_makes_sampling_repeatable_and_the_same_as_chat(api):
    client = api.client()
    sample = lambda seed: client.chat.completions.create(  # noqa: E731
        model="strong", messages=QUESTION, max_tokens=12, temperature=1.0, top_p=1.0, seed=seed
    )
    first, again, other = sample(7), sample(7), sample(8)
    assert first.choices[0].message.content == again.choices[0].message.content
    assert first.choices[0].message.content != other.choices[0].message.content
    chat = GenerationConfig(temperature=1.0, top_p=1.0, top_k=0, repetition_penalty=1.0, seed=7, max_new_tokens=12)
    assert first.choices[0].message.content == api.engine.answer(QUESTION, "strong", chat).text


def test_refused_requests_say_why_with_openai_status_codes(api):
    client = api.client()
    for options, match in (
        ({"n": 2}, "n = 2: this server writes one answer per request"),
        ({"presence_penalty": 0.5}, "presence_penalty is not supported by this server; use repetition_penalty"),
        ({"logprobs": True}, "logprobs is not supported"),
        ({"tool_choice": "required", "tools": [_WEATHER]}, "tool_choice required is not supported"),
        ({"response_format": {"type": "json_object"}}, "response_format json_object is not supported"),
        ({"temperature": 3}, "The request's temperature is not valid"),
        ({"max_tokens": 5000}, "The model's context is 2048 tokens, and this request asks for 5016"),
    ):
        with pytest.raises(openai.BadRequestError, match=match) as refused:
            _greedy(client, "strong", **options)
        assert refused.value.body["type"] == "invalid_request_error"
    for messages, match in (
        ([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}], "Only text and image_url"),
        ([*QUESTION, {"role": "assistant", "content": "Hi"}], "The last message must be the user's"),
        ([*QUESTION, {"role": "system", "content": "Be brief"}, *QUESTION], "system .or developer. message may only"),
    ):
        with pytest.raises(openai.BadRequestError, match=match):
            client.chat.completions.create(model="strong", messages=messages, max_tokens=4)
    not_json = httpx.post(f"{api.url}/chat/completions", content=b"{", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400 and not_json.json()["error"]["type"] == "invalid_request_error"
    form = httpx.post(f"{api.url}/chat/completions", data={"model": "strong"})  # what another site's page could send
    assert form.status_code == 415
    nowhere = httpx.get(f"{api.url}/embeddings")
    assert nowhere.status_code == 404 and "POST /v1/chat/completions" in nowhere.json()["error"]["message"]


def test_switched_off_or_without_a_model_it_says_so(serve_endpoint):
    off = serve_endpoint(enabled=False)
    with pytest.raises(openai.InternalServerError, match="Turn it on in the Chat tab") as refused:
        off.client().models.list()
    assert refused.value.status_code == 503
    off.endpoint.switch(True)
    assert len(off.client().models.list().data) == 3
    off.engine.unload()
    assert off.client().models.list().data == []
    with pytest.raises(openai.InternalServerError, match="No model is loaded"):
        _greedy(off.client(), "tiny-qwen2")


_WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def _body(model: str, **options) -> dict:
    return {"model": model, "messages": QUESTION, "max_tokens": 12, "temperature": 0, **options}


def test_error_bodies_have_openai_shape(api):
    refused = httpx.post(f"{api.url}/chat/completions", json=_body("nope"))
    assert refused.status_code == 404
    assert refused.json()["error"] == {
        "message": "The model 'nope' is not loaded here. Loaded: tiny-qwen2, strong, second (GET /v1/models lists "
        "them).",
        "type": "not_found_error",
        "param": "model",
        "code": "model_not_found",
    }
    assert json.loads(httpx.get(f"{api.url}/models").text)["object"] == "list"


def test_a_gguf_file_in_chat_is_refused_for_good_by_its_name_alone(serve_endpoint, tmp_path, tiny_model_dir):
    """A GGUF file answers in Chat only: a request is a 400 (nothing to retry, unlike a 503) that names the file,
    never the server's path to it."""
    pytest.importorskip("llama_cpp")
    from studio.api import Studio
    from studio.config import ModelConfig, QuantizationConfig

    path = make_gguf(tiny_model_dir, tmp_path / "tiny.gguf")
    studio = Studio(tmp_path / "runs")
    studio.load_model(ModelConfig(name_or_path=str(path)), QuantizationConfig(method="none"))
    try:
        api = serve_endpoint(over=studio.engine)
        refused = httpx.post(f"{api.url}/chat/completions", json=_body("tiny.gguf"))
        message = refused.json()["error"]["message"]
        assert refused.status_code == 400 and "GGUF file tiny.gguf, which answers in Chat only" in message
        assert str(tmp_path) not in message
    finally:
        studio.unload_model()
