"""Conversations to training tokens through the tokenizer's chat template, prompts masked out of the labels."""

from __future__ import annotations

from dataclasses import dataclass

from studio.data.formats import Message
from studio.data.registry import DataError

IGNORE_INDEX = -100


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    truncated: bool

    @property
    def num_label_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def render(tokenizer, messages: list[Message], add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def assistant_spans(tokenizer, messages: list[Message]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of every assistant turn (answer + end token).

    Spans come from rendering growing prefixes, so any template works as long as a
    conversation's rendering starts with the rendering of its earlier turns.
    """
    text = render(tokenizer, messages)
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = render(tokenizer, messages[:index], add_generation_prompt=True)
        end = render(tokenizer, messages[: index + 1])
        if not (end.startswith(start) and text.startswith(end)):
            raise DataError(
                "The chat template renders a conversation differently from its own beginning, so answers cannot be "
                "located for label masking. Choose another model.chat_template (e.g. chatml)."
            )
        spans.append((len(start), len(end)))
    return text, spans


def encode_conversation(
    tokenizer, messages: list[Message], cutoff_len: int, train_on_responses_only: bool = True
) -> Encoded | None:
    """Token ids and labels for one conversation; None when truncation leaves no answer token."""
    text, spans = assistant_spans(tokenizer, messages)
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoding["input_ids"], encoding["offset_mapping"]
    labels = [
        token if not train_on_responses_only or _inside(offset, spans) else IGNORE_INDEX
        for token, offset in zip(ids, offsets)
    ]
    truncated = len(ids) > cutoff_len
    encoded = Encoded(ids[:cutoff_len], labels[:cutoff_len], truncated)
    return encoded if encoded.num_label_tokens else None


def _inside(offset: tuple[int, int], spans: list[tuple[int, int]]) -> bool:
    start, end = offset
    if end <= start:
        return False
    return any(span_start <= start < span_end for span_start, span_end in spans)
