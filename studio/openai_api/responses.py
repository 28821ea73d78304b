"""What the endpoint answers: OpenAI's completion objects, whole or as server-sent chunks ending with `data: [DONE]`.

A chat answer read by its template (studio.chat.replies) comes apart as OpenAI's clients expect it: its function
calls as `tool_calls` (finish_reason "tool_calls"), its thought as `reasoning_content` (vLLM's name for it), the rest
as `content`. Streamed, the thought and the text come as they grow (a call being written is held back by the
reader), and the calls in one chunk once the answer has ended.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

from pydantic import BaseModel

from studio.openai_api.generation import Progress
from studio.openai_api.schema import (
    AnswerMessage,
    CalledFunction,
    CalledTool,
    ChatChoice,
    ChatChunk,
    ChatCompletion,
    ChunkChoice,
    Completion,
    Delta,
    StreamedTool,
    TextChoice,
    Usage,
)

DONE = "data: [DONE]\n\n"


@dataclass
class Reply:
    """One answer's identity, shared by all its chunks."""

    model: str
    prompt_tokens: int
    id: str = field(default_factory=lambda: secrets.token_hex(12))
    created: int = field(default_factory=lambda: int(time.time()))

    def usage(self, final: Progress) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=final.tokens,
            total_tokens=self.prompt_tokens + final.tokens,
        )


def event(model: BaseModel) -> str:
    return f"data: {model.model_dump_json()}\n\n"


def answer_message(final: Progress) -> AnswerMessage:
    calls = [
        CalledTool(id=f"call_{secrets.token_hex(12)}", function=CalledFunction(name=name, arguments=arguments))
        for name, arguments in final.calls
    ]
    content = final.text if final.text or not calls else None
    return AnswerMessage(content=content, reasoning_content=final.thinking or None, tool_calls=calls or None)


def finish_reason(final: Progress) -> str:
    return "tool_calls" if final.calls else final.finish_reason or "stop"


def chat_completion(reply: Reply, final: Progress) -> ChatCompletion:
    choice = ChatChoice(message=answer_message(final), finish_reason=finish_reason(final))
    return ChatCompletion(
        id=f"chatcmpl-{reply.id}", created=reply.created, model=reply.model, choices=[choice], usage=reply.usage(final)
    )


def chat_chunk(reply: Reply, delta: Delta, finish_reason: str | None = None) -> str:
    choice = ChunkChoice(delta=delta, finish_reason=finish_reason)
    return event(ChatChunk(id=f"chatcmpl-{reply.id}", created=reply.created, model=reply.model, choices=[choice]))


def chat_ending(reply: Reply, final: Progress, sent: Progress, usage: bool) -> list[str]:
    """The chunks after the streamed ones: what was held back, the calls, the finish reason, then the usage."""
    chunks = []
    thought, text = unsent(final.thinking, sent.thinking), unsent(final.text, sent.text)
    message = answer_message(final)
    tools = [StreamedTool(index=i, **call.model_dump()) for i, call in enumerate(message.tool_calls or [])]
    if thought or text or tools:
        chunks.append(
            chat_chunk(reply, Delta(content=text or None, reasoning_content=thought or None, tool_calls=tools or None))
        )
    chunks.append(chat_chunk(reply, Delta(), finish_reason(final)))
    if usage:
        body = ChatChunk(
            id=f"chatcmpl-{reply.id}", created=reply.created, model=reply.model, choices=[], usage=reply.usage(final)
        )
        chunks.append(event(body))
    return chunks


def unsent(text: str, sent: str) -> str:
    """What of `text` the client has not seen: decoding more tokens rarely rewrites the end of earlier text, and
    what was sent cannot be taken back, so a rewritten tail is skipped rather than sent twice."""
    return text[len(sent) :] if text.startswith(sent) else ""


def completion(reply: Reply, text: str, finish_reason: str | None, usage: Usage | None = None) -> Completion:
    choice = TextChoice(text=text, finish_reason=finish_reason)
    return Completion(id=f"cmpl-{reply.id}", created=reply.created, model=reply.model, choices=[choice], usage=usage)


def completion_ending(reply: Reply, final: Progress, sent: Progress, usage: bool) -> list[str]:
    chunks = [event(completion(reply, unsent(final.text, sent.text), final.finish_reason))]
    if usage:
        body = Completion(
            id=f"cmpl-{reply.id}", created=reply.created, model=reply.model, choices=[], usage=reply.usage(final)
        )
        chunks.append(event(body))
    return chunks
