"""Streaming several generated rows at once: a transformers streamer for batches, and the answers it yields."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass

import torch
from transformers import StoppingCriteria
from transformers.generation.streamers import BaseStreamer


@dataclass
class Answer:
    text: str = ""
    tokens: int = 0
    seconds: float = 0.0
    done: bool = False

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


class BatchStreamer(BaseStreamer):
    """Receives one token per row per step from `generate` and publishes every row's text so far."""

    def __init__(self, tokenizer, rows: int):
        self.tokenizer, self.rows = tokenizer, rows
        self.tokens: list[list[int]] = [[] for _ in range(rows)]
        self.finished = [False] * rows
        self.updates: queue.Queue = queue.Queue()
        self._prompt_seen = False
        self._started = time.perf_counter()
        self.answers = [Answer() for _ in range(rows)]

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # generate first hands over the prompt itself
            self._prompt_seen = True
            return
        for row, token in enumerate(value.reshape(self.rows, -1)[:, -1].tolist()):
            if self.finished[row]:
                continue
            if token in self._stop_ids:
                self.finished[row] = True
                self.answers[row].done = True
                continue
            self.tokens[row].append(token)
            self._refresh(row)
        self.updates.put(self._snapshot())

    def end(self) -> None:
        for row, answer in enumerate(self.answers):
            answer.done = True
            answer.text = self.tokenizer.decode(self.tokens[row], skip_special_tokens=True)  # whatever came, in full
        self.updates.put(self._snapshot())
        self.updates.put(None)

    @property
    def _stop_ids(self) -> set[int]:
        ids = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id}
        return {i for i in ids if i is not None}

    def _refresh(self, row: int) -> None:
        answer = self.answers[row]
        text = self.tokenizer.decode(self.tokens[row], skip_special_tokens=True)
        # a character split across tokens (Chinese, emoji) decodes as U+FFFD until its last byte arrives: hold it back
        answer.text = text.rstrip("\ufffd") if text.endswith("\ufffd") else text
        answer.tokens = len(self.tokens[row])
        answer.seconds = time.perf_counter() - self._started

    def _snapshot(self) -> list[Answer]:
        return [Answer(a.text, a.tokens, a.seconds, a.done) for a in self.answers]


class StopOnEvent(StoppingCriteria):
    """Ends generation at the next token once the event is set (the Stop button)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs):
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)
