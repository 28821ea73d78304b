"""Reading function calls back out of what a model wrote, per tool format: the inverse of
studio.modeling.tool_formats' `calls`, so Chat reads a call in the very words training taught.

Each reader takes a whole answer and returns the text outside its calls, the calls it could read (a name and the
arguments as JSON text) and, when the answer opened a call it could not read, why (a Message naming the call).
`start` is where the first call begins, complete or not, so a streaming answer can hold back a call still being
written instead of showing its raw text. Text without the format's call words is an answer, never an error.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from studio.locales import Message, say


class ToolCall(NamedTuple):
    name: str
    arguments: str  # JSON text, as studio.modeling.tool_formats.Call holds it


@dataclass(frozen=True)
class ParsedCalls:
    text: str  # the answer without its calls (whole, calls included, when they could not be read)
    calls: list[ToolCall] = field(default_factory=list)
    error: Message | None = None
    start: int | None = None  # where the first call starts in the answer; None when it writes no call words


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _loose(value: str) -> Any:
    """A parameter written as text (Qwen3.5's, GLM-4.5's): JSON when it reads as JSON, else the text itself, as
    tool_formats wrote a string as it is and anything else as JSON."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _no_json(index: int, error: Exception) -> Message:
    return say("chat.call_not_json", index=index, error=str(error))


def _object_calls(objects: Any, arguments_key: str, start: int) -> list[ToolCall] | Message:
    """{"name", arguments_key} objects (or a list of them) as calls, or why not."""
    listed = objects if isinstance(objects, list) else [objects]
    calls = []
    for index, item in enumerate(listed, start=start):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            return say("chat.call_no_name", index=index)
        calls.append(ToolCall(item["name"], _json_text(item.get(arguments_key, item.get("arguments", {})))))
    return calls


# -- readers, one per tool format -----------------------------------------------------------------------------------


def _default(text: str) -> ParsedCalls:
    """LLaMA-Factory's ReAct lines: `Action: name` then `Action Input: {json}`, one pair per call."""
    start = text.find("Action:")
    if start < 0:
        return ParsedCalls(text)
    pattern = r"Action:[ \t]*([^\n]*?)\s*Action Input:\s*(.*?)(?=\s*Action:|\Z)"
    calls = []
    for index, match in enumerate(re.finditer(pattern, text[start:], re.DOTALL), start=1):
        if not match.group(1):
            return ParsedCalls(text, error=say("chat.call_no_name", index=index), start=start)
        try:
            calls.append(ToolCall(match.group(1), _json_text(json.loads(match.group(2)))))
        except json.JSONDecodeError as error:
            return ParsedCalls(text, error=_no_json(index, error), start=start)
    if not calls:
        return ParsedCalls(text, error=say("chat.call_unfinished", index=1, closing="Action Input:"), start=start)
    return ParsedCalls(text[:start].strip(), calls, start=start)


Read = Callable[[str, int], ToolCall | list[ToolCall] | Message]


def _blocks(text: str, opening: str, closing: str, read: Read) -> ParsedCalls:
    """Calls written between `opening` and `closing` (Qwen's <tool_call>), each block read with `read` (given the
    number of the block's first call, for errors)."""
    start = text.find(opening)
    if start < 0:
        return ParsedCalls(text)
    calls: list[ToolCall] = []
    rest, position = [], 0
    for match in re.finditer(re.escape(opening) + "(.*?)" + re.escape(closing), text, re.DOTALL):
        read_calls = read(match.group(1), len(calls) + 1)
        if isinstance(read_calls, Message):
            return ParsedCalls(text, error=read_calls, start=start)
        calls += [read_calls] if isinstance(read_calls, ToolCall) else read_calls
        rest.append(text[position : match.start()])
        position = match.end()
    if opening in text[position:]:  # an opened call never closed (the answer ran out of tokens)
        error = say("chat.call_unfinished", index=len(calls) + 1, closing=closing)
        return ParsedCalls(text, calls, error, start)
    return ParsedCalls(("".join(rest) + text[position:]).strip(), calls, start=start)


def _qwen_call(body: str, index: int) -> ToolCall | Message:
    try:
        calls = _object_calls(json.loads(body), "arguments", index)
    except json.JSONDecodeError as error:
        return _no_json(index, error)
    return calls if isinstance(calls, Message) else calls[0]


def _qwen3_5_call(body: str, index: int) -> ToolCall | Message:
    function = re.search(r"<function=([^>\n]+)>(.*?)</function>", body, re.DOTALL)
    if function is None:
        return say("chat.call_unreadable", index=index, shape="<function=NAME>…</function>")
    parameters = re.findall(r"<parameter=([^>\n]+)>\n?(.*?)\n?</parameter>", function.group(2), re.DOTALL)
    return ToolCall(function.group(1).strip(), _json_text({key: _loose(value) for key, value in parameters}))


def _glm4_moe_call(body: str, index: int) -> ToolCall | Message:
    name, _, rest = body.partition("\n")
    if not name.strip():
        return say("chat.call_no_name", index=index)
    pairs = re.findall(r"<arg_key>(.*?)</arg_key>\s*<arg_value>(.*?)</arg_value>", rest, re.DOTALL)
    return ToolCall(name.strip(), _json_text({key: _loose(value) for key, value in pairs}))


def _glm4_moe(text: str) -> ParsedCalls:
    """GLM-4.5's <tool_call>name then <arg_key>/<arg_value> pairs; LLaMA-Factory writes no closing word, the
    model's own template does, so a call ends at </tool_call>, at the next call or at the end."""
    closed = re.sub(r"<tool_call>(?:(?!</tool_call>).)*?(?=<tool_call>|\Z)", r"\g<0></tool_call>", text, flags=re.S)
    parsed = _blocks(closed, "<tool_call>", "</tool_call>", _glm4_moe_call)
    return ParsedCalls(
        parsed.text if parsed.calls and not parsed.error else text, parsed.calls, parsed.error, parsed.start
    )


def _whole_json(text: str, arguments_key: str, prefix: str = "") -> ParsedCalls:
    """Llama 3's and Mistral's calls: the whole answer is a JSON object or list (after `prefix`, Mistral's
    [TOOL_CALLS] where its tokenizer keeps it as text)."""
    stripped = text.strip()
    body = stripped.removeprefix(prefix).lstrip() if prefix else stripped
    marked = bool(prefix) and stripped.startswith(prefix)
    if not (marked or body.startswith(("{", "["))):
        return ParsedCalls(text)
    start = text.find(stripped[0])
    try:
        value = json.loads(body)
    except json.JSONDecodeError as error:
        looks_like_call = marked or re.match(r'[\[{\s]*"name"', body) is not None
        return ParsedCalls(text, error=_no_json(1, error) if looks_like_call else None, start=start)
    if not marked and not _names_calls(value):
        return ParsedCalls(text)  # an answer that happens to be JSON
    calls = _object_calls(value, arguments_key, 1)
    if isinstance(calls, Message):
        return ParsedCalls(text, error=calls, start=start)
    return ParsedCalls("", calls, start=start)


def _names_calls(value: Any) -> bool:
    listed = value if isinstance(value, list) else [value]
    return bool(listed) and all(isinstance(item, dict) and "name" in item for item in listed)


def _glm4(text: str) -> ParsedCalls:
    """GLM-4's `name` line then the arguments' JSON; anything else is an answer (as LLaMA-Factory reads it)."""
    name, newline, arguments = text.strip().partition("\n")
    if not newline or not re.fullmatch(r"[\w.\-]+", name) or not arguments.lstrip().startswith("{"):
        return ParsedCalls(text)
    try:
        return ParsedCalls("", [ToolCall(name, _json_text(json.loads(arguments)))], start=text.find(name))
    except json.JSONDecodeError as error:
        return ParsedCalls(text, error=_no_json(1, error), start=text.find(name))


_PYTHON_LITERALS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}


def _python_value(node: ast.expr) -> Any:
    """A keyword's value in LFM2's Pythonic calls: a Python literal, or JSON's true/false/null as tool_formats
    writes non-string values."""
    if isinstance(node, ast.Name) and node.id in _PYTHON_LITERALS:
        return _PYTHON_LITERALS[node.id]
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_python_value(item) for item in node.elts]
    if isinstance(node, ast.Dict):
        return {_python_value(k): _python_value(v) for k, v in zip(node.keys, node.values) if k is not None}
    return ast.literal_eval(node)


def _lfm2_calls(body: str, index: int) -> list[ToolCall] | Message:
    try:
        tree = ast.parse(body.strip(), mode="eval").body
        nodes = tree.elts if isinstance(tree, ast.List) else [tree]
        calls = []
        for node in nodes:
            if not isinstance(node, ast.Call) or not isinstance(node.func, (ast.Name, ast.Attribute)):
                raise ValueError("not a call")
            values = {k.arg: _python_value(k.value) for k in node.keywords if k.arg}
            calls.append(ToolCall(ast.unparse(node.func), _json_text(values)))
        return calls
    except (SyntaxError, ValueError) as error:
        return say("chat.call_unreadable", index=index, shape=f"[name(key=value, …)] ({error})")


_QUOTE = '<|"|>'


class _GemmaReader:
    """Gemma 4's call syntax: {key:value,...}, [..], <|"|>-quoted strings, numbers, true/false/null."""

    def __init__(self, text: str):
        self.text, self.at = text, 0

    def value(self) -> Any:
        if self.text.startswith(_QUOTE, self.at):
            end = self.text.index(_QUOTE, self.at + len(_QUOTE))
            value, self.at = self.text[self.at + len(_QUOTE) : end], end + len(_QUOTE)
            return value
        opening = self.text[self.at : self.at + 1]
        if opening in ("{", "["):
            return self._container(opening)
        match = re.compile(r"[^,}\]]+").match(self.text, self.at)
        if match is None:
            raise ValueError(f"nothing to read at {self.at}")
        self.at = match.end()
        word = match.group(0).strip()
        return _PYTHON_LITERALS[word] if word in _PYTHON_LITERALS else json.loads(word)

    def _container(self, opening: str) -> Any:
        closing, self.at = "}" if opening == "{" else "]", self.at + 1
        items: dict | list = {} if opening == "{" else []
        while not self.text.startswith(closing, self.at):
            if isinstance(items, dict):
                colon = self.text.index(":", self.at)
                key, self.at = self.text[self.at : colon], colon + 1
                items[key] = self.value()
            else:
                items.append(self.value())
            if self.text.startswith(",", self.at):
                self.at += 1
        self.at += 1
        return items


def _gemma4_call(body: str, index: int) -> ToolCall | Message:
    match = re.match(r"call:([^{]+)(\{.*\})\s*$", body, re.DOTALL)
    try:
        if match is None:
            raise ValueError("no call:NAME{…}")
        return ToolCall(match.group(1).strip(), _json_text(_GemmaReader(match.group(2)).value()))
    except (ValueError, KeyError) as error:
        return say("chat.call_unreadable", index=index, shape=f"call:NAME{{…}} ({error})")


PARSERS: dict[str, Callable[[str], ParsedCalls]] = {
    "default": _default,
    "qwen": lambda text: _blocks(text, "<tool_call>", "</tool_call>", _qwen_call),
    "qwen3_5": lambda text: _blocks(text, "<tool_call>", "</tool_call>", _qwen3_5_call),
    "llama3": lambda text: _whole_json(text, "parameters"),
    "mistral": lambda text: _whole_json(text, "arguments", prefix="[TOOL_CALLS]"),
    "glm4": _glm4,
    "glm4_moe": _glm4_moe,
    "lfm2": lambda text: _blocks(text, "<|tool_call_start|>", "<|tool_call_end|>", _lfm2_calls),
    "gemma4": lambda text: _blocks(text, "<|tool_call>", "<tool_call|>", _gemma4_call),
    "phi4_mini": _default,  # its calls are the default format's (studio.modeling.tool_formats)
}


def parse_calls(tool_format: str | None, text: str) -> ParsedCalls:
    """The calls `text` writes in `tool_format` (a key of studio.modeling.tool_formats.TOOL_FORMATS); a format
    without tools reads every answer as text."""
    return PARSERS[tool_format](text) if tool_format in PARSERS else ParsedCalls(text)
