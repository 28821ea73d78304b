"""The OpenAI-compatible endpoint: GET /models, POST /chat/completions and /completions, as an ASGI app.

The web server mounts `app` under /v1 beside the page (the Chat tab's switch turns it on); `qlora-studio serve`
serves `standalone()`. Either way it answers with the engine the caller hands in, the one Chat uses: the loaded base
is one model name, each loaded adapter (or full/freeze run) another, and nothing is loaded twice.

At most MAX_IN_FLIGHT requests are taken at once (one answering, the others waiting for the engine); more are
refused with 429, which OpenAI's clients retry after a pause. Each request taken holds a thread of the server's
pool while it waits and answers, the pool the page's handlers share (40 threads): the limit keeps theirs free.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

from studio.adapters import AdapterError
from studio.chat.engine import EngineError
from studio.config.names import model_source
from studio.errors import StudioError
from studio.openai_api.access import Access
from studio.openai_api.errors import ApiError
from studio.openai_api.generation import Generation, Progress
from studio.openai_api.pictures import messages_pictures, model_pictures, seeing
from studio.openai_api.prompts import Prompt, chat_prompt, completion_prompt
from studio.openai_api.requests import Sampling, chat_sampling, completion_sampling, parsed
from studio.openai_api.responses import (
    DONE,
    Reply,
    chat_chunk,
    chat_completion,
    chat_ending,
    completion,
    completion_ending,
    event,
    unsent,
)
from studio.openai_api.schema import ChatRequest, CompletionRequest, Delta, ModelCard, ModelList

if TYPE_CHECKING:
    from studio.chat.engines import Engine

MAX_IN_FLIGHT = 4
MAX_BODY_BYTES = 24 * 2**20  # a long conversation is a few hundred kB; a picture's base64 up to 13 MiB


class OpenAIEndpoint:
    def __init__(self, engine: Callable[[], Engine], access: Access | None = None, enabled: bool = False):
        self._engine, self.access, self.enabled = engine, access or Access(), enabled
        self._in_flight, self._counting = 0, threading.Lock()
        self._copy: tuple[Any, Any] | None = None  # the loaded tokenizer and the endpoint's own copy of it
        self._copying = threading.Lock()
        self._created = int(time.time())  # what /models says of when each model was made: when this was
        self.app = Starlette(
            routes=[
                Route("/models", self._models, methods=["GET"]),
                Route("/models/{model:path}", self._model, methods=["GET"]),
                Route("/chat/completions", self._chat, methods=["POST"]),
                Route("/completions", self._completions, methods=["POST"]),
            ],
            exception_handlers={StudioError: _refused, HTTPException: _http_error, Exception: _bug},
        )

    def standalone(self) -> Starlette:
        """The endpoint alone, at /v1 as OpenAI's clients expect."""
        return Starlette(routes=[Mount("/v1", app=self.app)], exception_handlers={HTTPException: _http_error})

    def configure(self, host: str, key_file: str | None = None) -> None:
        """Who may call it on a server listening on `host`: its keys from QLORA_STUDIO_API_KEY and `key_file`."""
        self.access = Access.for_host(host, key_file)

    def switch(self, on: bool) -> None:
        """Turn the endpoint on or off (the Chat tab's switch); on beyond loopback only with a key."""
        if on:
            self.access.check_ready()
        self.enabled = on

    def models(self) -> dict[str, str | None]:
        """Every model name the endpoint answers to: the base's (its folder's name for a local one), then each
        loaded adapter's; the adapter each stands for (None: the base)."""
        engine = self._engine()
        if not engine.loaded or engine.model_name is None:
            return {}
        source = model_source(engine.model_name)
        names: dict[str, str | None] = {source.path.name if source.path else engine.model_name: None}
        for name in engine.adapters:
            names.setdefault(name, name)
        return names

    # -- routes ---------------------------------------------------------------------------------------------------

    async def _models(self, request: Request) -> Response:
        self._check(request)
        return JSONResponse(ModelList(data=self._cards()).model_dump())

    async def _model(self, request: Request) -> Response:
        self._check(request)
        wanted = request.path_params["model"]
        for card in self._cards():
            if card.id == wanted:
                return JSONResponse(card.model_dump())
        raise self._unknown(wanted)

    def _cards(self) -> list[ModelCard]:
        names = self.models()
        base = next(iter(names), "")
        return [
            ModelCard(id=name, created=self._created, owned_by="qlora-studio" if adapter is None else base)
            for name, adapter in names.items()
        ]

    async def _chat(self, request: Request) -> Response:
        self._check(request)
        body = parsed(ChatRequest, await _body(request))
        sampling, adapter = chat_sampling(body), self._adapter(body.model)
        shown = messages_pictures(body.messages)  # refused before the engine is asked: a URL, a path, a bad part
        looks = (lambda engine: seeing(engine, body.model)) if shown else None
        generation = await self._generation(
            lambda tokenizer, engine: chat_prompt(tokenizer, body, model_pictures(engine), shown),
            adapter,
            sampling,
            looks,
        )
        reply = Reply(body.model, generation.prompt_tokens)
        if body.stream:
            return _stream(generation, self._chat_events(reply, generation, _usage(body)))
        final = await _finished(generation, request)
        return JSONResponse(chat_completion(reply, final).model_dump())

    async def _completions(self, request: Request) -> Response:
        self._check(request)
        body = parsed(CompletionRequest, await _body(request))
        sampling, adapter = completion_sampling(body), self._adapter(body.model)
        generation = await self._generation(lambda tokenizer, _: completion_prompt(tokenizer, body), adapter, sampling)
        reply = Reply(body.model, generation.prompt_tokens)
        if body.stream:
            return _stream(generation, self._completion_events(reply, generation, _usage(body)))
        final = await _finished(generation, request)
        return JSONResponse(completion(reply, final.text, final.finish_reason, reply.usage(final)).model_dump())

    def _tokenizers(self, engine: Engine) -> tuple[Any, Any]:
        """(the engine's tokenizer, the endpoint's own copy of it). A fast tokenizer is one Rust object that threads
        must not share: one encoding with padding (Chat's batches) while another encodes without fails with
        "Already borrowed". The copy is made while the engine is held, so nothing else uses the original then."""
        with self._copying:
            if self._copy is None or self._copy[0] is not engine.tokenizer:
                with engine.selected(None) as (_, tokenizer):
                    self._copy = (tokenizer, copy.deepcopy(tokenizer))
            return self._copy

    async def _generation(
        self,
        prompt_of: Callable[[Any, Engine], Prompt],
        adapter: str | None,
        sampling: Sampling,
        check: Callable[[Engine], object] | None = None,
    ) -> Generation:
        """A new answer to the prompt `prompt_of(tokenizer, engine)` builds, counted among those in flight from now
        until it has ended or is dropped unread (429 when they are MAX_IN_FLIGHT already). `check(engine)` first:
        what the request needs of the engine (to see pictures) refused before anything else is asked of it."""
        with self._counting:
            if self._in_flight >= MAX_IN_FLIGHT:
                raise ApiError("openai.busy", status=429, code="engine_busy", most=MAX_IN_FLIGHT)
            self._in_flight += 1
        released = threading.Event()

        def release() -> None:
            with self._counting:
                if not released.is_set():
                    released.set()
                    self._in_flight -= 1

        def start() -> Generation:
            engine = self._engine()
            if check is not None:  # before the tokenizer: a GGUF file's would be refused as unavailable (503)
                check(engine)
            tokenizers = self._tokenizers(engine)
            return Generation(engine, prompt_of(tokenizers[1], engine), adapter, sampling, tokenizers, release)

        try:
            generation = await run_in_threadpool(start)
        except BaseException:
            release()
            raise
        # a stream whose client left before its first chunk is never read: the slot goes back with the object
        weakref.finalize(generation, release)
        return generation

    # -- streaming ------------------------------------------------------------------------------------------------

    async def _chat_events(self, reply: Reply, generation: Generation, usage: bool) -> AsyncIterator[str]:
        yield chat_chunk(reply, Delta(role="assistant", content=""))
        sent, final = Progress("", 0), None
        async for progress in iterate_in_threadpool(generation.progress()):
            if progress.finish_reason is not None:
                final = progress
                continue
            thought, text = unsent(progress.thinking, sent.thinking), unsent(progress.text, sent.text)
            if thought or text:
                sent = Progress(sent.text + text, progress.tokens, sent.thinking + thought)
                yield chat_chunk(reply, Delta(content=text or None, reasoning_content=thought or None))
        for chunk in chat_ending(reply, _ended(final), sent, usage):
            yield chunk
        yield DONE

    async def _completion_events(self, reply: Reply, generation: Generation, usage: bool) -> AsyncIterator[str]:
        sent, final = Progress("", 0), None
        async for progress in iterate_in_threadpool(generation.progress()):
            if progress.finish_reason is not None:
                final = progress
            elif text := unsent(progress.text, sent.text):
                sent = Progress(sent.text + text, progress.tokens)
                yield event(completion(reply, text, None))
        for chunk in completion_ending(reply, _ended(final), sent, usage):
            yield chunk
        yield DONE

    # -- checks ---------------------------------------------------------------------------------------------------

    def _check(self, request: Request) -> None:
        if not self.enabled:
            raise ApiError("openai.off", status=503)
        self.access.check(request.headers.get("authorization"), request.headers.get("host"))
        if request.method == "POST" and not request.headers.get("content-type", "").startswith("application/json"):
            raise ApiError("openai.json_only", status=415)  # a form post from another site's page is no API call

    def _adapter(self, model: str) -> str | None:
        names = self.models()
        if not names:
            raise ApiError("openai.no_model", status=503, code="model_not_loaded")
        if model not in names:
            raise self._unknown(model)
        return names[model]

    def _unknown(self, model: str) -> ApiError:
        known = ", ".join(self.models()) or "-"
        return ApiError(
            "openai.unknown_model", status=404, param="model", code="model_not_found", model=model, known=known
        )


async def _body(request: Request) -> bytes:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise ApiError("openai.too_large", status=413, most=MAX_BODY_BYTES // 2**20)
    return body


def _usage(body: ChatRequest | CompletionRequest) -> bool:
    return bool(body.stream_options and body.stream_options.include_usage)


def _stream(generation: Generation, events: AsyncIterator[str]) -> StreamingResponse:
    async def guarded() -> AsyncIterator[str]:
        try:
            async for chunk in events:
                yield chunk
        except StudioError as error:  # the status is sent already: the error goes as an event, as OpenAI's does
            yield event(_as_api_error(error).response_body())
        finally:  # a client gone mid-answer ends the generation at its next token
            generation.abandon()

    return StreamingResponse(guarded(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def _finished(generation: Generation, request: Request) -> Progress:
    """The whole answer, generated on the endpoint's thread; a client that hangs up ends it early."""
    task = asyncio.ensure_future(run_in_threadpool(_last, generation))
    while not task.done():
        await asyncio.wait({task}, timeout=0.5)
        if not task.done() and await request.is_disconnected():
            generation.abandon()
    return task.result()


def _last(generation: Generation) -> Progress:
    final = None
    for final in generation.progress():  # noqa: B007 (the last update is the whole answer)
        pass
    return _ended(final)


def _ended(final: Progress | None) -> Progress:
    if final is None or final.finish_reason is None:
        raise RuntimeError("the answer ended without its last update")
    return final


def _as_api_error(error: StudioError) -> ApiError:
    """The studio's own refusals as HTTP: no model (503), an adapter not loaded (404), anything else a fix for the
    caller (400)."""
    if isinstance(error, ApiError):
        return error
    lasting = error.message.key == "chat.gguf_chat_only"  # a GGUF file never serves here: no 503 to retry
    status = 503 if isinstance(error, EngineError) and not lasting else 404 if isinstance(error, AdapterError) else 400
    return ApiError(error.message.key, status=status, **error.message.args)


async def _refused(request: Request, error: Exception) -> Response:
    assert isinstance(error, StudioError)  # the handler of StudioError only
    refused = _as_api_error(error)
    headers = {"WWW-Authenticate": "Bearer"} if refused.status == 401 else None
    return JSONResponse(refused.response_body().model_dump(), status_code=refused.status, headers=headers)


async def _http_error(request: Request, error: Exception) -> Response:
    status = error.status_code if isinstance(error, HTTPException) else 500
    refused = ApiError("openai.no_route", status=status, method=request.method, path=request.url.path)
    return JSONResponse(refused.response_body().model_dump(), status_code=status)


async def _bug(request: Request, error: Exception) -> Response:
    import logging

    logging.getLogger("qlora_studio.openai").error("An API request failed", exc_info=error)
    refused = ApiError("openai.bug", status=500, error=f"{type(error).__name__}: {error}")
    return JSONResponse(refused.response_body().model_dump(), status_code=500)
