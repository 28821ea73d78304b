"""Tools offered to the model in Chat: function schemas checked before they reach a prompt, and the conversation
roles a tool call and its result take (studio.data.formats: function_call and observation, as training has them).

A schema is OpenAI's function shape, bare ({"name", "description", "parameters"}) or wrapped ({"type":
"function", "function": {...}}), as the chat formats' tool descriptions read either. What is checked is what a
tool description renders from: a name, a description that is text, parameters that are a JSON schema object whose
properties are objects and whose required names are among them. Anything else a schema holds is passed on.
"""

from __future__ import annotations

import json
import re
from typing import Any

from studio.errors import StudioError

TOOL_ROLES = ("function_call", "observation")
_NAME = re.compile(r"[A-Za-z_][\w.\-]*")


class ToolsError(StudioError):
    """The tools box holds something that is no list of function schemas."""


def check_tools(tools: str | list | dict | None) -> str:
    """The tools as the JSON list text a conversation's system message carries ("tools"), or "" for none.

    Text that already holds a list is kept as written (spacing too), as training keeps a dataset's tools text
    (Phi-4-mini's template copies it verbatim); a single schema is listed, as training lists it."""
    if tools is None or (isinstance(tools, str) and not tools.strip()):
        return ""
    given = tools if isinstance(tools, str) else None
    if given is not None:
        try:
            tools = json.loads(given)
        except json.JSONDecodeError as error:
            raise ToolsError("chat.tools_not_json", error=str(error)) from None
    listed = [tools] if isinstance(tools, dict) else tools
    if not isinstance(listed, list):
        raise ToolsError("chat.tools_not_list")
    names: dict[str, int] = {}
    for index, tool in enumerate(listed, start=1):
        name = _check_tool(tool, index)
        if name in names:
            raise ToolsError("chat.tool_duplicate", index=index, name=name, first=names[name])
        names[name] = index
    if not listed:
        return ""
    return given if given is not None and listed is tools else json.dumps(listed, ensure_ascii=False)


def _check_tool(tool: Any, index: int) -> str:
    if not isinstance(tool, dict):
        raise ToolsError("chat.tool_not_object", index=index)
    function = tool.get("function") if tool.get("type") == "function" else tool
    if not isinstance(function, dict):
        raise ToolsError("chat.tool_bad_key", index=index, name="?", key="function", expected='{"name": …}')
    name = function.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ToolsError("chat.tool_bad_name", index=index, value=json.dumps(name, ensure_ascii=False))
    if not isinstance(function.get("description", ""), str):
        raise ToolsError("chat.tool_bad_key", index=index, name=name, key="description", expected='"…"')
    _check_parameters(function.get("parameters"), index, name)
    return name


def _check_parameters(parameters: Any, index: int, name: str) -> None:
    if parameters is None:
        return  # a function without arguments
    shape = '{"type": "object", "properties": {…}}'
    if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
        raise ToolsError("chat.tool_bad_key", index=index, name=name, key="parameters", expected=shape)
    properties = parameters.get("properties", {})
    if not isinstance(properties, dict):
        raise ToolsError("chat.tool_bad_key", index=index, name=name, key="parameters.properties", expected="{…}")
    for key, spec in properties.items():
        if not isinstance(spec, dict):
            where = f"parameters.properties.{key}"
            raise ToolsError("chat.tool_bad_key", index=index, name=name, key=where, expected='{"type": "string"}')
    required = parameters.get("required", [])
    if not isinstance(required, list):
        raise ToolsError("chat.tool_bad_key", index=index, name=name, key="parameters.required", expected='["…"]')
    for key in required:
        if key not in properties:
            raise ToolsError("chat.tool_required_unknown", index=index, name=name, key=json.dumps(key))


def with_tools(messages: list[dict], tools: str) -> list[dict]:
    """The conversation with `tools` on its system message (one made, empty, when it has none), where training's
    studio.data.formats.with_system puts a dataset's tools; unchanged without tools."""
    if not tools:
        return messages
    if messages and messages[0]["role"] == "system":
        return [{**messages[0], "tools": tools}, *messages[1:]]
    return [{"role": "system", "content": "", "tools": tools}, *messages]


def has_tool_turns(messages: list[dict]) -> bool:
    return any(m["role"] in TOOL_ROLES or m.get("tools") for m in messages)


def function_call(calls: list[tuple[str, str]]) -> dict:
    """The function_call turn of an answer that made `calls` (name, arguments JSON text), as training data holds
    one: a JSON list of {"name", "arguments"} (the answer's other text is left out, as LLaMA-Factory's chat does)."""
    listed = [{"name": name, "arguments": json.loads(arguments)} for name, arguments in calls]
    return {"role": "function_call", "content": json.dumps(listed, ensure_ascii=False)}
