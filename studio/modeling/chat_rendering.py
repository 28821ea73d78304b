"""A conversation in a named chat format (studio.modeling.chat_formats): the pieces of every turn, tool
descriptions and calls, and what a reasoning format does with thoughts — each as LLaMA-Factory 0.9.5 encodes it.

Thoughts (reasoning formats: qwen3, deepseekr1, gpt_oss, ...): with thinking on, thoughts in the data are kept
and trained, and an answer without one is trained with an empty thought first (the model learns when it need not
think); with thinking off, thoughts are removed from every answer and the empty thought closes the prompt, masked
(the model is shown that it does not think, as the family's own "no thinking" prompt does). Under mask_history,
and in the one-turn prompts of dpo, kto and ppo, only the last answer is treated so: earlier answers lose their
thoughts and get no empty one (LLaMA-Factory's encode_multiturn discarding history thoughts, and encode_oneturn).
"""

from __future__ import annotations

import json
import re

from studio.modeling.chat_formats import BOS, EOS, ChatFormat, Piece
from studio.modeling.tool_formats import TOOL_FORMATS, Call


def split_system(messages: list[dict]) -> tuple[str, str, list[dict]]:
    """(system text, tools JSON, the turns after the system message)."""
    if messages and messages[0]["role"] == "system":
        return messages[0]["content"], messages[0].get("tools", ""), messages[1:]
    return "", "", messages


def system_text(fmt: ChatFormat, system: str, tools: str) -> str:
    """The data's system prompt (or the format's default) with the tool descriptions after it."""
    system = system or fmt.default_system
    return system + (TOOL_FORMATS[fmt.tool_format].tools_text(tools) if tools and fmt.tool_format else "")


def function_calls_text(fmt: ChatFormat, content: str) -> str:
    """A function_call turn in the format's tool format; a thought before the calls (or text around calls already
    written in the format's tool-call words) is kept in front of them."""
    if fmt.system_in_user:  # LLaMA-Factory's Llama2-style templates look for neither
        return _calls(fmt, content)
    if call := _between(fmt.tool_call_words, content):
        return content.replace(call.group(0), "") + _calls(fmt, call.group(1))
    if thought := _between(fmt.thought_words, content):
        return thought.group(0) + _calls(fmt, content.replace(thought.group(0), ""))
    return _calls(fmt, content)


def _between(words: tuple[str, str], text: str) -> re.Match[str] | None:
    return re.search(f"{re.escape(words[0])}(.*?){re.escape(words[1])}", text, re.DOTALL)


def _calls(fmt: ChatFormat, text: str) -> str:
    parsed = json.loads(text)
    calls: list[Call] = [
        (call["name"], json.dumps(call["arguments"], ensure_ascii=False))
        for call in (parsed if isinstance(parsed, list) else [parsed])
    ]
    return TOOL_FORMATS[fmt.tool_format or "default"].calls(calls)


def fill(pieces: tuple[Piece, ...], content: str) -> list[Piece]:
    return [p.replace("{content}", content) if isinstance(p, str) else p for p in pieces]


def turn_pieces(fmt: ChatFormat, messages: list[dict]) -> list[list[Piece]]:
    """The pieces of every turn after the system message; the first turn carries prefix and system text."""
    system, tools, turns = split_system(messages)
    has_head = bool(system or fmt.default_system or tools)  # LF: even an empty tool list opens the system slot
    head = system_text(fmt, system, tools) if has_head else ""
    slots = {
        "user": fmt.user,
        "assistant": fmt.assistant,
        "observation": fmt.observation,
        "function_call": fmt.function,
    }
    rendered = []
    for index, message in enumerate(turns):
        role, content = message["role"], message["content"]
        pieces: list[Piece] = []
        if index == 0:
            pieces += list(fmt.prefix)
            if has_head and fmt.system_in_user:
                if role == "user":
                    content = "".join(p for p in fill(fmt.system, head) if isinstance(p, str)) + content
            elif has_head:
                pieces += fill(fmt.system, head)
        if role == "function_call":
            if not fmt.supports_tools:  # callers refuse tool turns for a format without them first (data.tokenize)
                raise ValueError(f"chat format {fmt.name} has no tool turns")
            content = function_calls_text(fmt, content)
        pieces += fill(slots[role], content)
        rendered.append(pieces)
    return rendered


def render_text(fmt: ChatFormat, messages: list[dict], bos: str | None, eos: str | None) -> str:
    specials = {BOS: bos or "", EOS: eos or ""}
    return "".join(p if isinstance(p, str) else specials[p] for turn in turn_pieces(fmt, messages) for p in turn)


# -- thoughts ------------------------------------------------------------------------------------------------------


def without_thought(fmt: ChatFormat, text: str) -> str:
    opening, closing = fmt.thought_words
    return re.sub(f"{re.escape(opening)}.*?{re.escape(closing)}", "", text, flags=re.DOTALL).lstrip("\n")


def has_thought(fmt: ChatFormat, text: str) -> bool:
    opening, closing = fmt.thought_words
    return opening.strip() in text or closing.strip() in text


def thinking_turns(fmt: ChatFormat, messages: list[dict], history_thoughts: bool = True) -> list[dict]:
    """The conversation as a reasoning format trains it: with thinking off, no answer keeps its thought; without
    `history_thoughts` only the last answer may keep one (LLaMA-Factory drops the thoughts of earlier answers under
    mask_history, and in every one-turn prompt: dpo, kto, ppo)."""
    if not fmt.reasoning or (fmt.thinking and history_thoughts):
        return messages
    turns = split_system(messages)[2]
    head = messages[: len(messages) - len(turns)]
    last = len(turns) - 1
    return head + [
        {**m, "content": without_thought(fmt, m["content"])} if index % 2 and (not fmt.thinking or index < last) else m
        for index, m in enumerate(turns)
    ]


def thought_pairs(
    fmt: ChatFormat,
    messages: list[dict],
    pairs: list[tuple[list[int], list[int]]],
    empty: list[int],
    history_thoughts: bool = True,
) -> list[tuple[list[int], list[int]]]:
    """Each (prompt, answer) pair with the empty thought (`empty`, its ids) where the answer has none: in front of
    the answer (trained) with thinking on, at the end of the prompt (masked) with thinking off. Without
    `history_thoughts` only the last answer is given one; earlier answers stay as they are written."""
    if not fmt.reasoning:
        return pairs
    answers = split_system(messages)[2][1::2]
    result = []
    for index, ((prompt, answer), message) in enumerate(zip(pairs, answers)):
        if has_thought(fmt, message["content"]) or (not history_thoughts and index < len(pairs) - 1):
            result.append((prompt, answer))
        elif fmt.thinking:
            result.append((prompt, empty + answer))
        else:
            result.append((prompt + empty, answer))
    return result
