"""Answers watched during training: a few prompts answered greedily at every evaluation step, by the training
worker's own model (no second load), so a person sees behaviour change, not only a loss.

The prompts are evaluation.watch_prompts, or the first evaluation.watch_count validation examples (a
conversation's question, a pair's prompt); answers are bounded by evaluation.watch_max_new_tokens. The model
decodes as the RL stages sample (sampling_mode: dropout off, padding-aware attention, adapter folded where the
weights are not quantised). Rank 0 alone watches; a sharded (FSDP) model is not watched, since decoding on one
rank would wait for the others' shards.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from studio.config import EvaluationConfig, GenerationConfig
from studio.data.examples import FeedbackExample, PairwiseExample
from studio.data.formats import Message
from studio.data.tokenize_kinds import EncodedPrompt, encode_prompt
from studio.modeling.chat_templates import stop_ids
from studio.modeling.decode import decode, left_padded
from studio.runs.events import Watched, WatchedRow
from studio.training.reinforce import sampling_mode


class Watcher:
    def __init__(self, tokenizer: Any, prompts: list[EncodedPrompt], max_new_tokens: int):
        self.tokenizer, self.prompts = tokenizer, prompts
        self.generation = GenerationConfig(temperature=0.0, max_new_tokens=max_new_tokens, repetition_penalty=1.0)

    @classmethod
    def of(cls, tokenizer: Any, config: EvaluationConfig, validation: list, cutoff_len: int) -> Watcher | None:
        """The watcher the config asks for, or None when there is nothing to watch."""
        conversations = (
            [[{"role": "user", "content": text}, {"role": "assistant", "content": ""}] for text in config.watch_prompts]
            if config.watch_prompts
            else [c for c in map(_conversation, validation) if c][: config.watch_count]
        )
        prompts = [p for p in (encode_prompt(tokenizer, c, cutoff_len) for c in conversations) if p is not None]
        return cls(tokenizer, prompts, config.watch_max_new_tokens) if prompts else None

    def answer(
        self, model: Any, step: int, device: str, compute: Callable[[], AbstractContextManager] = nullcontext
    ) -> Watched:
        """The prompts' answers now; `compute`: the trainer's compute context (its autocast)."""
        started = time.perf_counter()
        ids, mask = left_padded([prompt.prompt for prompt in self.prompts], self.tokenizer.pad_token_id or 0)
        with sampling_mode(model), torch.no_grad(), compute():
            answers = decode(model, ids.to(device), mask.to(device), self.generation, stop_ids(model, self.tokenizer))
        rows = [
            WatchedRow(
                prompt=(prompt.question or self.tokenizer.decode(prompt.prompt))[-400:],
                answer=self.tokenizer.decode(tokens, skip_special_tokens=True)[:2000],
                reference=prompt.reference[:400] or None,
            )
            for prompt, tokens in zip(self.prompts, answers)
        ]
        return Watched(step=step, rows=rows, seconds=round(time.perf_counter() - started, 2))


def _conversation(example: Any) -> list[Message] | None:
    """A validation example as a conversation ending in its answer, or None (plain text has no prompt)."""
    if isinstance(example, PairwiseExample):
        return [*example.prompt, example.chosen]
    if isinstance(example, FeedbackExample):
        return example.messages
    if isinstance(example, list) and example and isinstance(example[-1], dict):
        return example
    return None
