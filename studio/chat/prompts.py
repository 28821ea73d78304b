"""Chat prompts with tools and thinking, encoded the way training encodes them, and what a loaded template offers.

With a named format (studio.modeling.chat_formats) a prompt is training's own: studio.data.tokenize_kinds'
encode_one_turn, piece by piece, with the tools described on the system turn, earlier answers' thoughts dropped and,
thinking off, the empty thought closing the prompt (LLaMA-Factory's encode_oneturn, which its chat uses too). So a
conversation asks the model in exactly the ids it was trained on. A tokenizer's own template renders the text
instead (its thinking switch passed as `enable_thinking`, which Qwen3's own template reads); it describes no tools,
as training refuses tool data for it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from studio.chat.tools import ToolsError, check_tools, has_tool_turns, with_tools
from studio.errors import StudioError
from studio.locales import say
from studio.modeling.chat_templates import format_of

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from studio.data.formats import Message
    from studio.modeling.chat_formats import ChatFormat

OWN_TEMPLATE = "own"


class TemplateRefused(StudioError):
    """A model's own chat template refused the conversation (its raise_exception: no system turn, turns that do not
    alternate) or could not be rendered: the template's words, and what to change."""


@contextlib.contextmanager
def template_refusals() -> Iterator[None]:
    """Rendering a model's own template: what it raises (jinja2's TemplateError, whatever the template says) is the
    user's to fix, in any language, not a bug the generating thread reports."""
    from jinja2 import TemplateError

    try:
        yield
    except TemplateError as error:
        raise TemplateRefused("chat.template_refused", reason=error) from error


@dataclass(frozen=True)
class Prompting:
    """What a chat asks beyond the conversation: tools (a JSON list text, studio.chat.tools.check_tools) and the
    thinking switch (None: as the template was loaded, model.enable_thinking)."""

    tools: str = ""
    thinking: bool | None = None


@dataclass(frozen=True)
class TemplateInfo:
    """What the loaded chat template offers a chat: its name, whether it writes tool calls, whether it thinks and
    whether it does so unless told otherwise."""

    name: str
    tools: bool
    reasoning: bool
    thinking: bool


def prompting_for(
    conversations: list[list[Message]], tools: str | list | None, thinking: bool | None
) -> Prompting | None:
    """What a chat asks beyond its conversations; None when nothing (the template's own rendering, as before).
    Every engine that encodes prompts with a transformers tokenizer asks it the same way (HF's, vLLM's)."""
    checked = check_tools(tools)
    if not checked and thinking is None and not any(has_tool_turns(c) for c in conversations):
        return None
    return Prompting(checked, thinking)


def with_system(messages: list[Message], system_prompt: str | None) -> list[Message]:
    """`messages` with generation.system_prompt in place of their own system turn (none given: as they are); the
    tools a system turn carries stay. Every engine sets it so, llama.cpp's included."""
    if not system_prompt:
        return messages
    head, rest = (messages[0], messages[1:]) if messages and messages[0]["role"] == "system" else ({}, messages)
    return [{**head, "role": "system", "content": system_prompt}, *rest]


def template_info(tokenizer: PreTrainedTokenizerBase) -> TemplateInfo:
    fmt = format_of(tokenizer)
    if fmt is not None:
        return TemplateInfo(fmt.name, fmt.supports_tools, fmt.reasoning, fmt.reasoning and fmt.thinking)
    # a template of its own thinks when it reads the switch Qwen3's (and others after it) read
    own = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else ""
    return TemplateInfo(OWN_TEMPLATE, False, "enable_thinking" in own, "enable_thinking" in own)


def chat_format(tokenizer: PreTrainedTokenizerBase, thinking: bool | None) -> ChatFormat | None:
    """The named format installed on the tokenizer, with `thinking` (when given) for a reasoning format."""
    fmt = format_of(tokenizer)
    if fmt is None or thinking is None or not fmt.reasoning:
        return fmt
    return replace(fmt, thinking=thinking)


def prompt_ids(tokenizer: PreTrainedTokenizerBase, messages: list[dict], prompting: Prompting) -> list[int]:
    """The ids that ask the model for the next answer of `messages` (they end with a user or observation turn)."""
    from studio.data.tokenize_kinds import encode_one_turn

    messages = with_tools(messages, prompting.tools)
    fmt = chat_format(tokenizer, prompting.thinking)
    if has_tool_turns(messages) and not (fmt and fmt.supports_tools):
        raise ToolsError("chat.tools_no_tool_format", template=fmt.name if fmt else say("data.own_template"))
    if fmt is None:
        return tokenizer.encode(_own_text(tokenizer, messages, prompting.thinking), add_special_tokens=False)
    ids, _ = encode_one_turn(tokenizer, messages, {"role": "assistant", "content": ""}, fmt)
    return ids


def _own_text(tokenizer: PreTrainedTokenizerBase, messages: list[dict], thinking: bool | None) -> str:
    switch: dict[str, Any] = {} if thinking is None else {"enable_thinking": thinking}
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **switch)
    return str(text)
