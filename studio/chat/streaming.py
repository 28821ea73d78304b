"""Streaming several generated rows at once: a transformers streamer for batches, and the answers it yields."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from transformers import StoppingCriteria
from transformers.generation.streamers import BaseStreamer

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from studio.chat.replies import ReplyReader
    from studio.locales import Message
    from studio.modeling.tool_parsing import ToolCall


@dataclass
class Answer:
    """An answer so far. Read by its template (a chat asked with tools or thinking, studio.chat.replies), `text`
    leaves out the thought and the calls, which `thinking` and `calls` hold, and `call_error` says why calls the
    answer wrote could not be read; otherwise `text` is all the answer says."""

    text: str = ""
    tokens: int = 0
    seconds: float = 0.0
    done: bool = False
    thinking: str = ""
    calls: list[ToolCall] = field(default_factory=list)
    call_error: Message | None = None

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


class BatchStreamer(BaseStreamer):
    """Collects one token per row per step from `generate` (in its thread) for one reader (`updates`, any thread).

    `put` only appends token ids: decoding waits until the reader asks, so a step of the model never pays for
    a reader's pace, and a reader that falls behind skips to the latest tokens instead of queueing every one.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, rows: int, reader: ReplyReader | None = None):
        self.tokenizer, self.rows, self.reader = tokenizer, rows, reader
        self.tokens: list[list[int]] = [[] for _ in range(rows)]
        self.finished = [False] * rows
        self.error: Exception | None = None  # set by the generating thread before it calls end()
        self._stop_ids = {i for i in (tokenizer.eos_token_id, tokenizer.pad_token_id) if i is not None}
        self._begun: list[float | None] = [None] * rows  # when each row's prompt came: its tokens/s starts there
        self._arrived = [0.0] * rows  # when each row's latest token came: its tokens/s ends there
        self._steps, self._ended = 0, False
        self._changed = threading.Condition()  # taken and let go within one call, never across a yield

    def put(self, value: torch.Tensor) -> None:
        self._put(range(self.rows), value)

    def stop_at(self, ids: set[int]) -> None:
        """More tokens that end a row, beyond the tokenizer's end and padding: the chat format's end tokens, which
        generate is told too. Told by the generating thread before it starts (computing them reads the tokenizer,
        which no other thread may use meanwhile)."""
        with self._changed:
            self._stop_ids |= ids

    def part(self, rows: list[int]) -> BaseStreamer:
        """The streamer of a `generate` that answers only `rows` of this batch (in that order); its end ends them."""
        return _Part(self, rows)

    def _put(self, rows: range | list[int], value: torch.Tensor) -> None:
        with self._changed:
            now = time.perf_counter()
            if self._begun[rows[0]] is None:  # generate first hands over the prompt itself; the clock starts there
                for row in rows:
                    self._begun[row] = now
                return
            for row, token in zip(rows, value.reshape(len(rows), -1)[:, -1].tolist()):
                if self.finished[row]:
                    continue
                if token in self._stop_ids:
                    self.finished[row] = True
                    continue
                self.tokens[row].append(token)
                self._arrived[row] = now
            self._steps += 1
            self._changed.notify_all()

    def end(self) -> None:
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def _end_rows(self, rows: list[int]) -> None:
        with self._changed:
            for row in rows:
                self.finished[row] = True
            self._steps += 1  # a change the reader shows: these rows are done
            self._changed.notify_all()

    def updates(self, every_s: float = 0.0) -> Iterator[list[Answer]]:
        """Every row's answer so far when tokens came, at most once per `every_s` seconds (the latest tokens win),
        and always the whole answers last, as soon as generation ends."""
        seen, due = 0, 0.0
        while True:
            with self._changed:
                # sit out the rest of the interval unless the answer ends meanwhile, then wait for anything new
                self._changed.wait_for(lambda: self._ended, timeout=max(0.0, due - time.perf_counter()))
                self._changed.wait_for(lambda: self._ended or self._steps != seen)  # noqa: B023 (called at once)
                seen, ended = self._steps, self._ended
                rows = [
                    (list(t), a, b, f) for t, a, b, f in zip(self.tokens, self._arrived, self._begun, self.finished)
                ]
            yield [self._answer(*row, ended) for row in rows]
            if ended:
                return
            due = time.perf_counter() + every_s

    def _answer(self, tokens: list[int], arrived: float, begun: float | None, finished: bool, ended: bool) -> Answer:
        if self.reader is None:
            # one sequence decodes to a str; transformers declares one answer type for a sequence and a batch
            text: str = self.tokenizer.decode(tokens, skip_special_tokens=True)  # type: ignore[assignment]
        else:
            text = self.reader.decode(tokens)
        if not ended:
            # a character split across tokens (Chinese, emoji) decodes as U+FFFD until its last byte arrives: hold
            # it back; the final answer shows whatever came, in full
            text = text.rstrip("\ufffd")
        seconds, done = (arrived - begun if tokens and begun is not None else 0.0), finished or ended
        if self.reader is None:
            return Answer(text, len(tokens), seconds, done)
        reply = self.reader.read(text, final=done)  # a call's error is named once its row has ended
        return Answer(reply.text, len(tokens), seconds, done, reply.thinking, reply.calls, reply.error)


class _Part(BaseStreamer):
    """Some rows of a BatchStreamer, fed by a `generate` of their own (a whole-model run's rows)."""

    def __init__(self, batch: BatchStreamer, rows: list[int]):
        self.batch, self.rows = batch, rows

    def put(self, value: torch.Tensor) -> None:
        self.batch._put(self.rows, value)

    def end(self) -> None:  # the batch ends once every part has; the engine says so
        self.batch._end_rows(self.rows)


class StopOnEvent(StoppingCriteria):
    """Ends generation at the next token once any of the events is set (the Stop button, a reader gone)."""

    def __init__(self, *events: threading.Event):
        self.events = events

    @property
    def stopped(self) -> bool:
        return any(event.is_set() for event in self.events)

    # transformers declares the answer as the legacy torch.BoolTensor class, which no torch function is typed to return
    def __call__(self, input_ids: torch.LongTensor, scores: object, **kwargs: Any) -> torch.Tensor:  # type: ignore[override]
        return torch.full((input_ids.shape[0],), self.stopped, dtype=torch.bool, device=input_ids.device)


def streamed(
    streamer: BatchStreamer, generate: Callable[[StopOnEvent], None], stop: threading.Event | None, every_s: float
) -> Generator[list[Answer], None, None]:
    """The answers that `generate(stopping)` puts into `streamer` on a thread of its own, yielded as they come
    (BatchStreamer.updates): what every engine's stream does around its own generation. `generate` sets
    `streamer.error` and ends the streamer however it ends; the error is raised here, to the reader.

    A reader that stops listening (the generator closed or dropped, from whichever thread) sets the stopping event,
    so the generation ends at its next token and frees its engine; the thread is joined before the end, so none
    outlives a script.
    """
    from studio.errors import StudioError

    abandoned = threading.Event()
    stopping = StopOnEvent(*[event for event in (stop, abandoned) if event is not None])
    worker = threading.Thread(target=generate, args=(stopping,), daemon=True)
    worker.start()
    try:
        yield from streamer.updates(every_s)
    finally:  # GeneratorExit included: nobody reads the rest, so nobody should wait for it
        abandoned.set()
    worker.join()
    if isinstance(streamer.error, StudioError):
        raise streamer.error
    if streamer.error is not None:
        raise RuntimeError(f"Generation failed: {type(streamer.error).__name__}: {streamer.error}")
