"""Conversations to training ids and labels, prompts masked out, the way LLaMA-Factory encodes them.

Each prompt and each answer is tokenised on its own, so an answer that starts with a space or a
line break keeps it in its own (trained) tokens instead of merging it into the prompt's last
token. With a named format (studio.modeling.chat_formats) every piece of a turn is encoded
separately, exactly as LLaMA-Factory's template of the same name does; with a tokenizer's own
template the rendered text is cut into prompt and answer spans, each encoded on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast

from studio.data.formats import Message
from studio.data.registry import DataError
from studio.locales import say
from studio.modeling.chat_formats import BOS, EOS, ChatFormat, Piece
from studio.modeling.chat_rendering import thinking_turns, thought_pairs, turn_pieces
from studio.modeling.chat_templates import format_of

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100
_TOOL_ROLES = ("function_call", "observation")


class Labelled(Protocol):
    """What the trainer's forward pass reads of an example: its ids and labels (Encoded, a sampled answer)."""

    @property
    def input_ids(self) -> list[int]: ...

    @property
    def labels(self) -> list[int]: ...


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    truncated: bool

    @property
    def num_label_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def encode_conversation(
    tokenizer: PreTrainedTokenizerBase, messages: list[Message], cutoff_len: int, train_on_responses_only: bool = True
) -> Encoded | None:
    """Token ids and labels for one conversation; None when truncation leaves no answer token.

    Longer than cutoff_len, each turn is cut in turn as LLaMA-Factory cuts it (fit_turn): the
    earlier turns are kept whole while they fit, the turn that overflows loses prompt or answer
    tokens from its end, and later turns are left out.
    """
    fmt = format_of(tokenizer)
    _check_tools(fmt, messages)
    pairs = _format_pairs(tokenizer, fmt, messages) if fmt else _own_template_pairs(tokenizer, messages)
    end = [tokenizer.eos_token_id] if fmt and fmt.efficient_eos else []
    ids, labels, used = [], [], len(end)
    for turn, (prompt, answer) in enumerate(pairs):
        if used >= cutoff_len:
            break
        prompt_len, answer_len = fit_turn(len(prompt), len(answer), cutoff_len - used)
        prompt, answer, used = prompt[:prompt_len], answer[:answer_len], used + prompt_len + answer_len
        if not train_on_responses_only:
            prompt_labels = prompt
        elif end and turn > 0:  # this prompt's first token stands where the last answer ended
            prompt_labels = end + [IGNORE_INDEX] * (len(prompt) - 1)
        else:
            prompt_labels = [IGNORE_INDEX] * len(prompt)
        ids += prompt + answer
        labels += prompt_labels + answer
    truncated = sum(len(p) + len(a) for p, a in pairs) + len(end) > cutoff_len
    encoded = Encoded(ids + end, labels + end, truncated)
    return encoded if encoded.num_label_tokens else None


def fit_turn(prompt_len: int, answer_len: int, budget: int) -> tuple[int, int]:
    """How many prompt and answer tokens of one turn fit in `budget` (LLaMA-Factory's infer_seqlen):
    a short answer is kept whole, else a short prompt is, else both shrink in proportion."""
    if 2 * answer_len < budget:
        answer_max = budget
    elif 2 * prompt_len < budget:
        answer_max = budget - prompt_len
    else:
        answer_max = int(budget * answer_len / (prompt_len + answer_len))
    answer_len = min(answer_max, answer_len)
    return min(max(budget - answer_len, 0), prompt_len), answer_len


def _check_tools(fmt: ChatFormat | None, messages: list[Message]) -> None:
    if any(m["role"] in _TOOL_ROLES for m in messages) and not (fmt and fmt.supports_tools):
        name = fmt.name if fmt else say("data.own_template")
        raise DataError("data.tools_no_tool_format", template=name)


def _encode_pieces(tokenizer: PreTrainedTokenizerBase, pieces: list[Piece]) -> list[int]:
    ids = []
    for piece in pieces:
        if piece == BOS:
            ids += [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        elif piece == EOS:
            ids += [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        elif piece:
            ids += tokenizer.encode(piece, add_special_tokens=False)
    return ids


def _format_pairs(
    tokenizer: PreTrainedTokenizerBase, fmt: ChatFormat, messages: list[Message]
) -> list[tuple[list[int], list[int]]]:
    messages = thinking_turns(fmt, messages)
    turns = [_encode_pieces(tokenizer, pieces) for pieces in turn_pieces(fmt, messages)]
    empty = tokenizer.encode(fmt.empty_thought, add_special_tokens=False) if fmt.reasoning else []
    return thought_pairs(fmt, messages, list(zip(turns[0::2], turns[1::2])), empty)


def render(tokenizer: PreTrainedTokenizerBase, messages: list[Message], add_generation_prompt: bool = False) -> str:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    return cast(str, text)  # tokenize=False returns the text; transformers annotates every kind it can return


def assistant_spans(tokenizer: PreTrainedTokenizerBase, messages: list[Message]) -> tuple[str, list[tuple[int, int]]]:
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
            raise DataError("data.template_not_prefix_stable")
        spans.append((len(start), len(end)))
    return text, spans


def _own_template_pairs(
    tokenizer: PreTrainedTokenizerBase, messages: list[Message]
) -> list[tuple[list[int], list[int]]]:
    """(prompt, answer) ids cut from the tokenizer's own rendering; text after the last answer joins no pair."""
    text, spans = assistant_spans(tokenizer, messages)
    pairs, position = [], 0
    for start, end in spans:
        prompt = tokenizer.encode(text[position:start], add_special_tokens=False) if start > position else []
        pairs.append((prompt, tokenizer.encode(text[start:end], add_special_tokens=False)))
        position = end
    return pairs
