"""How a chat format writes tool descriptions and function calls, so tool data trains as LLaMA-Factory renders it.

A tool format has two halves: `describe` turns the data's tool list into the text added after the system prompt,
`calls` turns one assistant turn's function calls (name, JSON arguments) into the text the model learns to write.
The wording of each is the model family's own (Qwen2.5's <tool_call> JSON, Qwen3.5's XML-like parameters, Llama
3.1's JSON tool calling, Mistral's [AVAILABLE_TOOLS], GLM-4's Chinese preamble, LFM2's Pythonic calls, Gemma 4's
declarations and call:NAME{...} syntax) as LLaMA-Factory 0.9.5 writes them; `default` is LLaMA-Factory's
ReAct-style Action / Action Input for families without a tool format of their own. Phi-4-mini describes nothing:
its tools text goes in as the data writes it, between <|tool|> and <|/tool|>, and its calls are `default`'s.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from studio.errors import StudioError

Call = tuple[str, str]  # a function's name and its arguments as JSON text


@dataclass(frozen=True)
class ToolFormat:
    describe: Callable[[list[dict]], str] | None  # None: the tools text is kept as given, between `verbatim`
    calls: Callable[[list[Call]], str]
    verbatim: tuple[str, str] = ("", "")

    def tools_text(self, text: str) -> str:
        """What the system prompt gains for the data's tools text (a JSON list): LLaMA-Factory's tool formatter
        describes the tools and writes nothing for "[]"; a template that writes them as given keeps even "[]"."""
        if self.describe is None:
            return self.verbatim[0] + text + self.verbatim[1]
        listed = json.loads(text)
        return self.describe(listed) if listed else ""


def _wrapped(tool: dict) -> dict:
    """The OpenAI shape {"type": "function", "function": {...}} of a tool given either way."""
    return tool if tool.get("type") == "function" else {"type": "function", "function": tool}


def _bare(tool: dict) -> dict:
    """The function itself of a tool given either way."""
    return tool.get("function", tool) if tool.get("type") == "function" else tool


def _json(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


def _default_describe(tools: list[dict]) -> str:
    described, names = "", []
    for tool in map(_bare, tools):
        arguments = ""
        parameters = tool.get("parameters") or {}  # LLaMA-Factory requires them; a tool without any has none to list
        for name, spec in (parameters.get("properties") or {}).items():
            required = ", required" if name in parameters.get("required", []) else ""
            choices = ", should be one of [{}]".format(", ".join(spec["enum"])) if spec.get("enum") else ""
            items = ", where each item should be {}".format(spec["items"].get("type", "")) if spec.get("items") else ""
            kind, text = spec.get("type", ""), spec.get("description", "")
            arguments += f"  - {name} ({kind}{required}): {text}{choices}{items}\n"
        described += f"> Tool Name: {tool['name']}\nTool Description: {tool.get('description', '')}\nTool Args:\n"
        described += arguments + "\n"
        names.append(tool["name"])
    return (
        f"You have access to the following tools:\n{described}Use the following format if using a tool:\n```\n"
        f"Action: tool name (one of [{', '.join(names)}])\nAction Input: the input to the tool, in a JSON format "
        'representing the kwargs (e.g. ```{"input": "hello world", "num_beams": 5}```)\n```\n'
    )


def _default_calls(calls: list[Call]) -> str:
    return "\n".join(f"Action: {name}\nAction Input: {arguments}" for name, arguments in calls)


def _value_text(value: Any) -> str:
    return value if isinstance(value, str) else _json(value)


def _tools_in_xml(tools: list[dict]) -> str:
    """Qwen2.5's and GLM-4.5's opening: the tools as JSON lines in <tools> tags, then how to call them."""
    listed = "".join("\n" + _json(_wrapped(tool)) for tool in tools)
    return (
        "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with "
        f"function signatures within <tools></tools> XML tags:\n<tools>{listed}\n</tools>\n\nFor each function call, "
    )


def _qwen_describe(tools: list[dict]) -> str:
    return _tools_in_xml(tools) + (
        "return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n"
        '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
    )


def _qwen_calls(calls: list[Call]) -> str:
    blocks = [_json({"name": name, "arguments": json.loads(arguments)}) for name, arguments in calls]
    return "\n".join(f"<tool_call>\n{block}\n</tool_call>" for block in blocks)


def _qwen3_5_describe(tools: list[dict]) -> str:
    listed = "".join("\n" + _json(_bare(tool)) for tool in tools)
    return (
        f"\n\n# Tools\n\nYou have access to the following functions:\n\n<tools>{listed}\n</tools>\n\nIf you choose "
        "to call a function ONLY reply in the following format with NO suffix:\n\n<tool_call>\n"
        "<function=example_function_name>\n<parameter=example_parameter_1>\nvalue_1\n</parameter>\n"
        "<parameter=example_parameter_2>\nThis is the value for the second parameter\nthat can span\nmultiple "
        "lines\n</parameter>\n</function>\n</tool_call>\n\n<IMPORTANT>\nReminder:\n- Function calls MUST follow "
        "the specified format: an inner <function=...></function> block must be nested within "
        "<tool_call></tool_call> XML tags\n- Required parameters MUST be specified\n- You may provide optional "
        "reasoning for your function call in natural language BEFORE the function call, but NOT after\n- If there "
        "is no function call available, answer the question like normal with your current knowledge and do not "
        "tell the user about function calls\n</IMPORTANT>"
    )


def _qwen3_5_calls(calls: list[Call]) -> str:
    blocks = []
    for name, arguments in calls:
        block = f"<tool_call>\n<function={name}>"
        for key, value in json.loads(arguments).items():
            block += f"\n<parameter={key}>\n{_value_text(value)}\n</parameter>"
        blocks.append(block + "\n</function>\n</tool_call>")
    return "\n".join(blocks)


def _today() -> datetime:
    return datetime.now()


def _llama3_describe(tools: list[dict]) -> str:
    listed = "".join(_json(_wrapped(tool), indent=4) + "\n\n" for tool in tools)
    today = _today().strftime("%d %b %Y")  # Llama 3.1's system prompt dates itself
    return (
        f"Cutting Knowledge Date: December 2023\nToday Date: {today}\n\nYou have access to the following functions. "
        "To call a function, please respond with JSON for a function call. Respond in the format "
        '{"name": function name, "parameters": dictionary of argument name and its value}. Do not use variables.'
        f"\n\n{listed}"
    )


def _llama3_calls(calls: list[Call]) -> str:
    objects = [{"name": name, "parameters": json.loads(arguments)} for name, arguments in calls]
    return _json(objects[0] if len(objects) == 1 else objects)


def _mistral_describe(tools: list[dict]) -> str:
    return "[AVAILABLE_TOOLS] " + _json([_wrapped(tool) for tool in tools]) + "[/AVAILABLE_TOOLS]"


def _mistral_calls(calls: list[Call]) -> str:
    return _json([{"name": name, "arguments": json.loads(arguments)} for name, arguments in calls])


def _glm4_describe(tools: list[dict]) -> str:
    listed = "".join(
        f"\n\n## {tool['name']}\n\n{_json(tool, indent=4)}\n在调用上述函数时，请使用 Json 格式表示调用的参数。"
        for tool in map(_bare, tools)
    )
    return (
        "你是一个名为 ChatGLM 的人工智能助手。你是基于智谱 AI 公司训练的语言模型 GLM-4 模型开发的，"
        f"你的任务是针对用户的问题和要求提供适当的答复和支持。\n\n# 可用工具{listed}"
    )


def _glm4_calls(calls: list[Call]) -> str:
    if len(calls) > 1:
        raise StudioError("data.tools_one_call_per_turn", count=len(calls))  # as LLaMA-Factory refuses them
    name, arguments = calls[0]
    return f"{name}\n{arguments}"


def _glm4_moe_describe(tools: list[dict]) -> str:
    return _tools_in_xml(tools) + (
        "output the function name and arguments within the following XML format:\n<tool_call>{function-name}"
        "\n<arg_key>{arg-key-1}</arg_key>\n<arg_value>{arg-value-1}</arg_value>\n<arg_key>{arg-key-2}</arg_key>\n"
        "<arg_value>{arg-value-2}</arg_value>\n...\n</tool_call>\n"
    )


def _glm4_moe_calls(calls: list[Call]) -> str:
    blocks = []
    for name, arguments in calls:
        block = "\n<tool_call>" + name
        for key, value in json.loads(arguments).items():
            block += f"\n<arg_key>{key}</arg_key>\n<arg_value>{_value_text(value)}</arg_value>"
        blocks.append(block)
    return "\n".join(blocks)


def _lfm2_describe(tools: list[dict]) -> str:
    return f"List of tools: <|tool_list_start|>{_json([_bare(tool) for tool in tools])}<|tool_list_end|>"


def _lfm2_calls(calls: list[Call]) -> str:
    rendered = []
    for name, arguments in calls:
        values = json.loads(arguments).items()
        keywords = [f'{key}="{value}"' if isinstance(value, str) else f"{key}={_json(value)}" for key, value in values]
        rendered.append(f"{name}({', '.join(keywords)})")
    return f"<|tool_call_start|>[{', '.join(rendered)}]<|tool_call_end|>"


_QUOTE = '<|"|>'  # what Gemma 4 writes around a string, on both sides


def _quoted(text: Any) -> str:
    return f"{_QUOTE}{text}{_QUOTE}"


def _gemma4_schema(spec: dict) -> str:
    """One parameter: its description and upper-case type only (no items, enums or nested properties)."""
    parts = [f"description:{_quoted(spec['description'])}"] if spec.get("description") else []
    parts += [f"type:{_quoted(str(spec['type']).upper())}"] if spec.get("type") else []
    return "{" + ",".join(parts) + "}"


def _gemma4_parameters(parameters: dict) -> str:
    parts = []
    if properties := parameters.get("properties"):
        listed = ",".join(f"{name}:{_gemma4_schema(spec)}" for name, spec in properties.items())
        parts.append(f"properties:{{{listed}}}")
    if required := parameters.get("required"):
        parts.append(f"required:[{','.join(map(_quoted, required))}]")
    if parameters.get("type"):
        parts.append(f"type:{_quoted(str(parameters['type']).upper())}")
    return "{" + ",".join(parts) + "}"


def _gemma4_describe(tools: list[dict]) -> str:
    """One declaration line per tool, in Gemma 4's own object syntax (bare keys, <|"|>-quoted strings)."""
    declarations = []
    for tool in map(_bare, tools):
        declaration = f"declaration:{tool['name']}{{description:{_quoted(tool.get('description', ''))}"
        if parameters := tool.get("parameters"):
            declaration += f",parameters:{_gemma4_parameters(parameters)}"
        if response := tool.get("response"):
            kind = str(response.get("type", "")).upper()
            parts = [f"description:{_quoted(response['description'])}"] if response.get("description") else []
            parts += [f"type:{_quoted(kind)}"] if kind == "OBJECT" else []  # other response types go unsaid
            declaration += f",response:{{{','.join(parts)}}}"
        declarations.append(declaration + "}")
    return "\n".join(declarations)


def _gemma4_value(value: Any) -> str:
    """An argument in Gemma 4's call syntax: strings quoted, object keys bare and sorted, JSON's literals."""
    if isinstance(value, str):
        return _quoted(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ",".join(f"{key}:{_gemma4_value(value[key])}" for key in sorted(value)) + "}"
    if isinstance(value, list):
        return "[" + ",".join(map(_gemma4_value, value)) + "]"
    return "null" if value is None else str(value)  # numbers as Python writes them: 2.0 stays 2.0


def _gemma4_calls(calls: list[Call]) -> str:
    rendered = []
    for name, arguments in calls:
        value = json.loads(arguments)
        if isinstance(value, dict):
            body = _gemma4_value(value)  # {key:value,...}
        else:  # arguments that are no object go inside the braces, a string as it is
            body = "{" + (value if isinstance(value, str) else _gemma4_value(value)) + "}"
        rendered.append(f"<|tool_call>call:{name}{body}<tool_call|>")
    return "".join(rendered)


TOOL_FORMATS = {
    "default": ToolFormat(_default_describe, _default_calls),
    "qwen": ToolFormat(_qwen_describe, _qwen_calls),
    "qwen3_5": ToolFormat(_qwen3_5_describe, _qwen3_5_calls),
    "llama3": ToolFormat(_llama3_describe, _llama3_calls),
    "mistral": ToolFormat(_mistral_describe, _mistral_calls),
    "glm4": ToolFormat(_glm4_describe, _glm4_calls),
    "glm4_moe": ToolFormat(_glm4_moe_describe, _glm4_moe_calls),
    "lfm2": ToolFormat(_lfm2_describe, _lfm2_calls),
    "gemma4": ToolFormat(_gemma4_describe, _gemma4_calls),
    # LLaMA-Factory's phi4_mini names no function formatter, so its calls are the default format's
    "phi4_mini": ToolFormat(None, _default_calls, verbatim=("<|tool|>", "<|/tool|>")),
}
