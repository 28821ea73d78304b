"""Named chat formats, turn by turn, so training ids equal LLaMA-Factory's for the same template.

A format is a list of pieces per turn kind: text with "{content}" where the message goes, and
BOS/EOS for the tokenizer's own special ids. The facts (strings, default system prompts, where
the system text goes, GLM-4's end-of-sequence handling) are those of the model families and of
LLaMA-Factory 0.9.5's templates of the same name; `qwen` is Qwen1.5's format (its default system
prompt differs from Qwen2.5's). Every format also renders itself as a Jinja chat template, so
generation and exported models see exactly the prompts training saw.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

BOS, EOS = ("bos_token",), ("eos_token",)  # tuples so they never equal a text piece
Piece = str | tuple[str]

_IM = (
    "<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n",
    "{content}<|im_end|>\n",
    "<|im_start|>system\n{content}<|im_end|>\n",
)
_QWEN_OBSERVATION = (
    "<|im_start|>user\n<tool_response>\n{content}\n</tool_response><|im_end|>\n<|im_start|>assistant\n",
)
# Qwen2.5's own chat template puts this after the system prompt when tools are given.
_QWEN_TOOLS = (
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>{tool_text}"
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\n<tool_call>\n{{"name": <function-name>, "arguments": '
    "<args-json-object>}}\n</tool_call>"
)


@dataclass(frozen=True)
class ChatFormat:
    name: str
    user: tuple[Piece, ...]  # ends with the assistant's header: the prompt the answer follows
    assistant: tuple[Piece, ...]
    system: tuple[Piece, ...] = ("{content}",)
    prefix: tuple[Piece, ...] = ()
    default_system: str = ""
    system_in_user: bool = False  # the system text opens the first user message (Mistral, Gemma)
    efficient_eos: bool = (
        False  # no end token per answer: the next prompt's first label is EOS, one EOS ends all (GLM-4)
    )
    observation: tuple[Piece, ...] | None = None  # None: this format has no tool calls
    tools_text: str = ""  # added to the system text when tools are given; "{tool_text}" lists them

    @property
    def supports_tools(self) -> bool:
        return self.observation is not None


def _im(name: str, default_system: str = "", tools: bool = False) -> ChatFormat:
    user, assistant, system = _IM
    return ChatFormat(
        name,
        (user,),
        (assistant,),
        (system,),
        default_system=default_system,
        observation=_QWEN_OBSERVATION if tools else None,
        tools_text=_QWEN_TOOLS if tools else "",
    )


FORMATS = {
    f.name: f
    for f in (
        _im("chatml", tools=True),
        _im("qwen", "You are a helpful assistant.", tools=True),
        _im("qwen2.5", "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.", tools=True),
        _im("yi"),
        ChatFormat(
            "llama3",
            (
                "<|start_header_id|>user<|end_header_id|>\n\n{content}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
            ),
            ("{content}<|eot_id|>",),
            ("<|start_header_id|>system<|end_header_id|>\n\n{content}<|eot_id|>",),
            prefix=(BOS,),
        ),
        ChatFormat(
            "mistral",
            ("[INST] {content}[/INST]",),
            (" {content}", EOS),
            ("{content}\n\n",),
            prefix=(BOS,),
            system_in_user=True,
        ),
        ChatFormat(
            "gemma",
            ("<start_of_turn>user\n{content}<end_of_turn>\n<start_of_turn>model\n",),
            ("{content}<end_of_turn>\n",),
            ("{content}\n\n",),
            prefix=(BOS,),
            system_in_user=True,
        ),
        ChatFormat(
            "glm4",
            ("<|user|>\n{content}<|assistant|>",),
            ("\n{content}",),
            ("<|system|>\n{content}",),
            prefix=("[gMASK]<sop>",),
            efficient_eos=True,
        ),
        ChatFormat(
            "deepseek", ("User: {content}\n\nAssistant:",), ("{content}", EOS), ("{content}\n\n",), prefix=(BOS,)
        ),
        # Plain-text instructions for base models without special tokens.
        ChatFormat(
            "alpaca",
            ("### Instruction:\n{content}\n\n### Response:\n",),
            ("{content}", EOS, "\n\n"),
            ("{content}\n\n",),
        ),
    )
}

# Model folder or hub names (last path part, lower case) and the format their family uses.
_FAMILIES = [
    (r"qwen2\.5-", "qwen2.5"),
    (r"qwen(1\.5|2)?-", "qwen"),
    (r"(meta-)?llama-3", "llama3"),
    (r"(mistral-7b|mixtral-8x)", "mistral"),
    (r"(code)?gemma-(1\.1-)?\d+b", "gemma"),
    (r"glm-4-", "glm4"),
    (r"deepseek-(llm|moe|math)-", "deepseek"),
    (r"yi-", "yi"),
]


def format_for_name(name: str) -> ChatFormat | None:
    last = name.rstrip("/").split("/")[-1].lower()
    return next((FORMATS[f] for pattern, f in _FAMILIES if re.match(pattern, last)), None)


def split_system(messages: list[dict]) -> tuple[str, str, list[dict]]:
    """(system text, tools JSON, the turns after the system message)."""
    if messages and messages[0]["role"] == "system":
        return messages[0]["content"], messages[0].get("tools", ""), messages[1:]
    return "", "", messages


def system_text(fmt: ChatFormat, system: str, tools: str) -> str:
    """The data's system prompt (or the format's default) with the tool descriptions after it."""
    system = system or fmt.default_system
    if not tools:
        return system
    tool_text = "".join(
        "\n" + json.dumps(t if t.get("type") == "function" else {"type": "function", "function": t}, ensure_ascii=False)
        for t in json.loads(tools)
    )
    return system + fmt.tools_text.format(tool_text=tool_text)


def function_calls_text(content: str) -> str:
    """A function_call turn as Qwen's <tool_call> blocks, one per call."""
    calls = json.loads(content)
    calls = calls if isinstance(calls, list) else [calls]
    blocks = [json.dumps({"name": c["name"], "arguments": c["arguments"]}, ensure_ascii=False) for c in calls]
    return "\n".join(f"<tool_call>\n{block}\n</tool_call>" for block in blocks)


def fill(pieces: tuple[Piece, ...], content: str) -> list[Piece]:
    return [p.replace("{content}", content) if isinstance(p, str) else p for p in pieces]


def turn_pieces(fmt: ChatFormat, messages: list[dict]) -> list[list[Piece]]:
    """The pieces of every turn after the system message; the first turn carries prefix and system text."""
    system, tools, turns = split_system(messages)
    head = system_text(fmt, system, tools)
    slots = {
        "user": fmt.user,
        "assistant": fmt.assistant,
        "observation": fmt.observation,
        "function_call": fmt.assistant,
    }
    rendered = []
    for index, message in enumerate(turns):
        role, content = message["role"], message["content"]
        pieces: list[Piece] = []
        if index == 0:
            pieces += list(fmt.prefix)
            if head and fmt.system_in_user:
                content = "".join(p for p in fill(fmt.system, head) if isinstance(p, str)) + content
            elif head:
                pieces += fill(fmt.system, head)
        if role == "function_call":
            content = function_calls_text(content)
        slot = slots[role]
        if slot is None:  # callers refuse tool turns for a format without them first (studio.data.tokenize)
            raise ValueError(f"chat format {fmt.name} has no tool turns")
        pieces += fill(slot, content)
        rendered.append(pieces)
    return rendered


def render_text(fmt: ChatFormat, messages: list[dict], bos: str | None, eos: str | None) -> str:
    specials = {BOS: bos or "", EOS: eos or ""}
    return "".join(p if isinstance(p, str) else specials[p] for turn in turn_pieces(fmt, messages) for p in turn)
