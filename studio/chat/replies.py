"""An answer read as the template writes one: its thought apart, its function calls read, the rest its text.

The thought is what the format's thought words enclose at the answer's start (or, when the prompt opened it, what
comes before the closing word); the calls are read by the format's own reader (studio.modeling.tool_parsing), the
inverse of the writer training used. While the answer streams, a closing word half written and a call not yet
closed are held back rather than shown as raw text; a call that cannot be read is named only once the answer ends.

Marker words can be special tokens (gpt-oss's <|channel|>, Gemma 4's <|tool_call>), which a plain decode drops:
the reader decodes with every special token dropped except those its format's markers are made of.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from studio.chat.prompts import Prompting, chat_format, template_info
from studio.modeling.chat_formats import THOUGHT
from studio.modeling.chat_rendering import fill
from studio.modeling.tool_formats import TOOL_FORMATS
from studio.modeling.tool_parsing import ToolCall, parse_calls

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from studio.locales import Message


_NAME = "qs_function"  # a function's name, to find where a call's own words end


@dataclass(frozen=True)
class Reply:
    text: str  # what the answer says, without its thought and its calls (calls kept when they cannot be read)
    thinking: str = ""
    calls: list[ToolCall] = field(default_factory=list)
    error: Message | None = None  # why the calls the answer wrote could not be read (once it has ended)


class ReplyReader:
    """Decodes and reads the answers of one chat template (`thought`: its thought words, None when it does not
    think; `tool_format`: its tool format, None when it has none; `slot`: the words its function_call turns wrap
    the calls in, Mistral's [TOOL_CALLS], Gemma 4's <|tool> and <tool|>)."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        thought: tuple[str, str] | None,
        tool_format: str | None,
        slot: tuple[str, ...] = (),
    ) -> None:
        self.tokenizer, self.tool_format = tokenizer, tool_format
        self.thought = (thought[0].strip(), thought[1].strip()) if thought else None
        self.slot = [word.strip() for word in slot if word.strip()]
        markers = [*(thought or ()), *self.slot]
        self._call_opening = ""  # what a call starts with, up to its function's name
        if tool_format:  # the words a call is written in: those of a call made to no arguments
            markers.append(TOOL_FORMATS[tool_format].calls([(_NAME, "{}")]))
            self._call_opening = markers[-1].split(_NAME)[0].strip()
        self._dropped = _dropped_ids(tokenizer, markers)

    def decode(self, ids: list[int]) -> str:
        text = self.tokenizer.decode([i for i in ids if i not in self._dropped], skip_special_tokens=False)
        return str(text)

    def read(self, text: str, final: bool) -> Reply:
        if any(text.lstrip().startswith(word) for word in self.slot):  # a thought inside the call turn's words
            text = self._unwrapped(text)
        thinking, rest = self._thought(text, final)
        parsed = parse_calls(self.tool_format, rest)
        if parsed.calls or parsed.start is not None:  # the function_call turn's own words are no answer
            rest = self._unwrapped(rest)
            parsed = parse_calls(self.tool_format, rest)
        if not final:  # a call being written is held back (its opening word too); those already closed show
            shown = rest[: parsed.start] if parsed.start is not None else _held_back(rest, self._call_opening)
            return Reply(shown.rstrip(), thinking, parsed.calls)
        if parsed.error is not None:
            return Reply(rest, thinking, [], parsed.error)
        return Reply(parsed.text, thinking, parsed.calls)

    def _unwrapped(self, text: str) -> str:
        for word in self.slot:
            text = text.replace(word, "")
        return text

    def _thought(self, text: str, final: bool) -> tuple[str, str]:
        """(thought, the rest of the answer)."""
        if self.thought is None:
            return "", text
        opening, closing = self.thought
        head = text.lstrip()
        opened = head.startswith(opening)
        body = head[len(opening) :] if opened else head
        end = body.find(closing)
        if end >= 0 and (opened or opening not in body[:end]):  # closed, or opened by the prompt and closed here
            return body[:end].strip(), body[end + len(closing) :].lstrip()
        if opened:  # still thinking (or the answer ran out of tokens while it thought)
            return (body if final else _held_back(body, closing)).strip(), ""
        if not final and head and opening.startswith(head):  # the opening word itself still arriving
            return "", ""
        return "", text


def _held_back(text: str, word: str) -> str:
    """`text` without an end that may be the start of `word`, still arriving."""
    for size in range(min(len(word), len(text)), 0, -1):
        if text.endswith(word[:size]):
            return text[:-size]
    return text


def _dropped_ids(tokenizer: PreTrainedTokenizerBase, markers: list[str]) -> set[int]:
    """The special tokens a plain decode drops, less those the markers are written with."""
    special = {i for i, token in tokenizer.added_tokens_decoder.items() if token.special}
    special |= set(tokenizer.all_special_ids)
    return {i for i in special if not any(str(tokenizer.convert_ids_to_tokens(i)) in m for m in markers)}


def reply_reader(tokenizer: PreTrainedTokenizerBase, prompting: Prompting) -> ReplyReader:
    """The reader of answers to prompts asked with `prompting` under the tokenizer's template."""
    fmt = chat_format(tokenizer, prompting.thinking)
    if fmt is None:  # a template of its own: thoughts in the words most write them in; calls it never taught
        return ReplyReader(tokenizer, THOUGHT if template_info(tokenizer).reasoning else None, None)
    slot = "".join(piece for piece in fill(fmt.function, "\0") if isinstance(piece, str)).split("\0")
    return ReplyReader(tokenizer, fmt.thought_words if fmt.reasoning else None, fmt.tool_format, tuple(slot))
