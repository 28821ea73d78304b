"""Conversations to training ids and labels, prompts masked out, the way LLaMA-Factory encodes them.

Each prompt and each answer is tokenised on its own, so an answer that starts with a space or a
line break keeps it in its own (trained) tokens instead of merging it into the prompt's last
token. With a named format (studio.modeling.chat_formats) every piece of a turn is encoded
separately, exactly as LLaMA-Factory's template of the same name does; with a tokenizer's own
template the rendered text is cut into prompt and answer spans, each encoded on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

from studio.data.formats import Message
from studio.data.pictures import conversation_pictures, refuse_text_model
from studio.data.registry import DataError
from studio.locales import say
from studio.modeling.chat_formats import BOS, EOS, ChatFormat, Piece
from studio.modeling.chat_rendering import thinking_turns, thought_pairs, turn_pieces
from studio.modeling.chat_templates import format_of

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


IGNORE_INDEX = -100
_TOOL_ROLES = ("function_call", "observation")


class PictureTokens(Protocol):
    """What encoding needs of a vision-language model's pictures (studio.data.picture_tokens.PictureEncoder, which
    builds on Encoded: named by its shape here, so the two modules do not import each other)."""

    def expand(self, messages: list[Message]) -> list[Message]: ...

    def finish(self, encoded: Encoded, pictures: list[str]) -> Encoded | None: ...


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
    images: tuple[str, ...] = ()  # absolute paths of its pictures, in the order their tokens stand in input_ids

    @property
    def num_label_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def encode_conversation(
    tokenizer: PreTrainedTokenizerBase,
    messages: list[Message],
    cutoff_len: int,
    train_on_prompt: bool = False,
    mask_history: bool = False,
    pictures: PictureTokens | None = None,
) -> Encoded | None:
    """Token ids and labels for one conversation; None when truncation leaves no answer token, or cuts into a
    picture. A conversation that shows pictures needs `pictures`, the vision-language model's encoder
    (studio.data.picture_tokens): each of its placeholders becomes the picture's tokens, which are never learned.

    Answers are learned, prompts masked; `train_on_prompt` learns the prompts too, `mask_history` the last answer
    only (LLaMA-Factory's options of those names). Longer than cutoff_len, each turn is cut in turn as
    LLaMA-Factory cuts it (fit_turn): the turns taken first are kept whole while they fit, the turn that overflows
    loses prompt or answer tokens from its end, and the rest are left out. Turns are taken in order, or with
    mask_history from the last one back, so that the answer learned survives the cut.
    """
    messages, shown = picture_messages(tokenizer, messages, pictures)
    fmt = format_of(tokenizer)
    _check_tools(fmt, messages)
    if fmt:  # under mask_history, as in LLaMA-Factory, earlier answers lose their thoughts
        pairs = _format_pairs(tokenizer, fmt, messages, history_thoughts=not mask_history)
    else:
        pairs = _own_template_pairs(tokenizer, messages)
    end = [tokenizer.eos_token_id] if fmt and fmt.efficient_eos else []
    pieces, used = [], len(end)
    for turn, (prompt, answer) in enumerate(pairs[::-1] if mask_history else pairs):
        if used >= cutoff_len:
            break
        prompt_len, answer_len = fit_turn(len(prompt), len(answer), cutoff_len - used)
        prompt, answer, used = prompt[:prompt_len], answer[:answer_len], used + prompt_len + answer_len
        # `turn` counts in the order taken: with mask_history the earlier turns are the later ones, so (as in
        # LLaMA-Factory) the first turn's prompt opens with an EOS label (at position 0, never predicted) and the
        # last turn's prompt, the one whose answer is learned, with none.
        prompt_labels = _prompt_labels(prompt, end if turn > 0 else [], train_on_prompt)
        answer_labels = [IGNORE_INDEX] * len(answer) if mask_history and turn > 0 else answer
        pieces.append((prompt + answer, prompt_labels + answer_labels))
    if mask_history:
        pieces.reverse()
    ids = [token for piece, _ in pieces for token in piece]
    labels = [label for _, piece_labels in pieces for label in piece_labels]
    truncated = sum(len(p) + len(a) for p, a in pairs) + len(end) > cutoff_len
    encoded = Encoded(ids + end, labels + end, truncated)
    finished = pictures.finish(encoded, shown) if pictures is not None and shown else encoded
    return finished if finished is not None and finished.num_label_tokens else None


def picture_messages(
    tokenizer: PreTrainedTokenizerBase, messages: list[Message], pictures: PictureTokens | None
) -> tuple[list[Message], list[str]]:
    """The messages with each placeholder expanded into its picture's tokens (`pictures`, the vision-language model's
    encoder), and the pictures they show, in order; messages that show none come back as they are. Pictures with a
    text model's tokenizer (no `pictures`) are refused by name."""
    shown = conversation_pictures(messages)
    if not shown:
        return messages, []
    if pictures is None:
        refuse_text_model(Path(tokenizer.name_or_path or "?").name)
    return pictures.expand(messages), shown


def _prompt_labels(prompt: list[int], end: list[int], train_on_prompt: bool) -> list[int]:
    """A prompt's labels: itself when prompts are learned; else masked, but with efficient_eos (`end`, the EOS
    id) its first token stands where the last answer ended, so it is labelled EOS: the answer's end is learned."""
    if train_on_prompt:
        return prompt
    return end + [IGNORE_INDEX] * (len(prompt) - len(end))


def fit_turn(prompt_len: int, answer_len: int, budget: int) -> tuple[int, int]:
    """How many prompt and answer tokens of one turn fit in `budget` (LLaMA-Factory's infer_seqlen):
    a short answer is kept whole, else a short prompt is, else both shrink in proportion."""
    if 2 * answer_len < budget:
        answer_max = budget
    elif 2 * prompt_len < budget:
        answer_max = budget - prompt_len
    else:
        answer_max = int(budget * (answer_len / (prompt_len + answer_len)))  # LF's order: 22 * (15 / 22) < 15
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
    tokenizer: PreTrainedTokenizerBase, fmt: ChatFormat, messages: list[Message], history_thoughts: bool = True
) -> list[tuple[list[int], list[int]]]:
    """(prompt, answer) ids of every turn; without `history_thoughts` earlier answers lose their thoughts
    (studio.modeling.chat_rendering.thinking_turns)."""
    messages = thinking_turns(fmt, messages, history_thoughts)
    turns = [_encode_pieces(tokenizer, pieces) for pieces in turn_pieces(fmt, messages)]
    empty = tokenizer.encode(fmt.empty_thought, add_special_tokens=False) if fmt.reasoning else []
    return thought_pairs(fmt, messages, list(zip(turns[0::2], turns[1::2])), empty, history_thoughts)


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
