"""A request's sampling settings, and the fields the endpoint refuses rather than ignore.

OpenAI's defaults apply where a field is absent (temperature 1, top_p 1, no penalty); a chat answer without
max_tokens runs until the model ends it (studio.openai_api.generation), a text completion's is 16 tokens, OpenAI's
own default there. What the studio cannot do is said with the field at fault (HTTP 400), never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from studio.openai_api.errors import ApiError
from studio.openai_api.schema import ChatRequest, CompletionRequest, SamplingFields

COMPLETION_DEFAULT_TOKENS = 16
MAX_STOPS = 4  # as OpenAI allows
Parsed = TypeVar("Parsed", bound=BaseModel)


@dataclass(frozen=True)
class Sampling:
    max_tokens: int | None  # None: until the model ends it or its context does (studio.openai_api.generation)
    temperature: float = 1.0  # OpenAI's defaults: sample from the model's own distribution
    top_p: float = 1.0
    top_k: int = 0  # 0: off
    repetition_penalty: float = 1.0
    seed: int | None = None  # None: a fresh one per answer
    stop: tuple[str, ...] = ()

    def generate_kwargs(self) -> dict[str, Any]:
        if self.temperature == 0 or self.top_p == 0:  # greedy, as GenerationConfig's temperature 0 means in Chat
            return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k or None}


def parsed(model: type[Parsed], body: bytes) -> Parsed:
    """The request body read into `model`; a malformed one is refused naming the field at fault (the deepest: a
    content part's bad field, not the string the content could also have been)."""
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        first = max(error.errors(), key=lambda found: len(found["loc"]))  # the first of the deepest
        where = ".".join(str(part) for part in first["loc"]) or None
        raise ApiError("openai.bad_request", param=where, field=where or "body", problem=first["msg"]) from None


def chat_sampling(request: ChatRequest) -> Sampling:
    _refuse_unsupported(request)
    if request.top_logprobs:
        raise ApiError("openai.unsupported", param="top_logprobs", field="top_logprobs")
    kind = (request.response_format or {}).get("type", "text")
    if kind != "text":
        raise ApiError("openai.unsupported_value", param="response_format", field="response_format", value=kind)
    return _sampling(request, request.max_completion_tokens or request.max_tokens)


def completion_sampling(request: CompletionRequest) -> Sampling:
    _refuse_unsupported(request)
    for name, given in (("echo", request.echo), ("suffix", request.suffix), ("best_of", (request.best_of or 1) > 1)):
        if given:
            raise ApiError("openai.unsupported", param=name, field=name)
    return _sampling(request, request.max_tokens or COMPLETION_DEFAULT_TOKENS)


def _refuse_unsupported(request: SamplingFields) -> None:
    if request.n != 1:
        raise ApiError("openai.one_choice", param="n", n=request.n)
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(request, name):
            raise ApiError("openai.penalty_unsupported", param=name, field=name)
    for name in ("logit_bias", "logprobs"):
        if getattr(request, name):
            raise ApiError("openai.unsupported", param=name, field=name)


def _sampling(request: SamplingFields, max_tokens: int | None) -> Sampling:
    stops = [request.stop] if isinstance(request.stop, str) else list(request.stop or [])
    stops = [stop for stop in stops if stop]
    if len(stops) > MAX_STOPS:
        raise ApiError("openai.too_many_stops", param="stop", count=len(stops), most=MAX_STOPS)
    return Sampling(
        max_tokens=max_tokens,
        temperature=1.0 if request.temperature is None else request.temperature,
        top_p=1.0 if request.top_p is None else request.top_p,
        top_k=request.top_k or 0,
        repetition_penalty=request.repetition_penalty or 1.0,
        seed=request.seed,
        stop=tuple(stops),
    )
