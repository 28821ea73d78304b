"""Alpaca, sharegpt and openai records read into chat messages, with the meaning LLaMA-Factory gives them.

Roles after reading: system, user, assistant, plus the tool roles function_call (the model's
call, a JSON {"name", "arguments"} or a list of them; trained like an answer) and observation
(the tool's result; part of the prompt). A dataset's tool descriptions travel on the system
message under "tools" (a JSON list), so conversations stay plain lists of messages.
"""

from __future__ import annotations

import json
from typing import Any

from studio.data.registry import DatasetSpec
from studio.locales import say

# role and content are text; a turn that shows pictures also holds "images", the absolute paths of its pictures in
# the order of its <image> placeholders (studio.data.pictures), and the system turn may hold "tools"
Message = dict[str, Any]

ASKING_ROLES = ("user", "observation")  # turns the model answers
ANSWER_ROLES = ("assistant", "function_call")  # turns the model is trained to produce
# How Qwen's chat template wraps several tool results of one turn; openai data brings them as separate messages.
TOOL_RESULT_SEPARATOR = "\n</tool_response>\n<tool_response>\n"


class Skip(Exception):
    """A record that cannot become an example; `reason` (a Message of the table) is phrased 'with ...'."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def text(value: object) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def value_of(spec: DatasetSpec, record: dict, role: str) -> Any:
    """The record's value for a column role; None when the registry maps none or the record lacks it."""
    column = spec.column(role)
    return record.get(column) if column else None


def alpaca_prompt(spec: DatasetSpec, record: dict) -> list[Message]:
    """History turns and the instruction (with its input on the next line) as the last user turn."""
    user = "\n".join(
        part for part in (text(value_of(spec, record, "prompt")), text(value_of(spec, record, "query"))) if part
    )
    if not user.strip():
        raise Skip(say("data.skip_empty_instruction"))
    messages: list[Message] = []
    for turn in value_of(spec, record, "history") or []:
        if not (isinstance(turn, (list, tuple)) and len(turn) == 2):
            raise Skip(say("data.skip_bad_history"))
        messages += [{"role": "user", "content": text(turn[0])}, {"role": "assistant", "content": text(turn[1])}]
    return messages + [{"role": "user", "content": user}]


def chat_turns(spec: DatasetSpec, record: dict) -> tuple[str, list[Message]]:
    """The system prompt and the turns of a sharegpt or openai record, roles mapped through the entry's tags."""
    tags = spec.tags
    raw = value_of(spec, record, "messages")
    if not isinstance(raw, list) or not raw:
        raise Skip(say("data.skip_no_messages"))
    if not all(isinstance(turn, dict) for turn in raw):
        raise Skip(say("data.skip_message_not_object"))
    system = text(value_of(spec, record, "system"))
    if raw[0].get(tags.role_tag) == tags.system_tag:
        system, raw = text(raw[0].get(tags.content_tag)), raw[1:]
    roles = {
        tags.user_tag: "user",
        tags.assistant_tag: "assistant",
        tags.observation_tag: "observation",
        tags.function_tag: "function_call",
    }
    turns: list[Message] = []
    for turn in raw:
        role, content = roles.get(turn.get(tags.role_tag)), text(turn.get(tags.content_tag))
        if spec.formatting == "openai" and role in ANSWER_ROLES and turn.get("tool_calls"):
            role, content = "function_call", _openai_calls(turn["tool_calls"])
        if role is None:
            raise Skip(say("data.skip_unknown_role", roles=sorted(roles)))
        if spec.formatting == "openai" and role == "observation" and turns and turns[-1]["role"] == "observation":
            turns[-1]["content"] += TOOL_RESULT_SEPARATOR + content
            continue
        turns.append({"role": role, "content": content})
    return system, turns


def _openai_calls(tool_calls: Any) -> str:
    try:
        calls = [call["function"] for call in tool_calls]
        return json.dumps(
            [{"name": c["name"], "arguments": _arguments(c.get("arguments", {}))} for c in calls], ensure_ascii=False
        )
    except (TypeError, KeyError):
        raise Skip(say("data.skip_bad_tool_calls", shape="[{'function': {'name', 'arguments'}}]")) from None


def _arguments(arguments: object) -> object:
    """OpenAI sends arguments as a JSON string; the chat templates render them as an object."""
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except json.JSONDecodeError:
            return arguments
    return arguments


def check_alternation(turns: list[Message], ends_with_answer: bool) -> None:
    """Turns must go question, answer, question, ... and end as the kind needs."""
    for index, turn in enumerate(turns):
        expected = ANSWER_ROLES if index % 2 else ASKING_ROLES
        if turn["role"] not in expected:
            raise Skip(say("data.skip_not_alternating"))
    if not turns or (turns[-1]["role"] in ANSWER_ROLES) != ends_with_answer:
        raise Skip(say("data.skip_no_final_answer" if ends_with_answer else "data.skip_no_final_question"))
    for turn in turns:
        if turn["role"] == "function_call":
            check_function_call(turn["content"])


def check_function_call(content: str) -> list[dict]:
    """The calls of a function_call turn: a JSON object {"name", "arguments"} or a list of them."""
    try:
        calls = json.loads(content)
    except json.JSONDecodeError:
        raise Skip(say("data.skip_function_call_not_json")) from None
    calls = calls if isinstance(calls, list) else [calls]
    if not all(isinstance(c, dict) and "name" in c and "arguments" in c for c in calls):
        raise Skip(say("data.skip_bad_function_call", shape='{"name": ..., "arguments": ...}'))
    return calls


def tools_json(spec: DatasetSpec, record: dict) -> str:
    """The record's tool descriptions as a JSON list text; "" when it has none. A tools text that lists none ("[]")
    stays "[]": LLaMA-Factory opens the system turn for any tools text, so such a record has a system turn. A text
    that is already a list stays as written (spacing and escapes too): Phi-4-mini's template copies it verbatim."""
    tools = value_of(spec, record, "tools")
    if tools in (None, "", [], {}):
        return ""
    given = tools if isinstance(tools, str) else None
    if given is not None:
        try:
            tools = json.loads(given)
        except json.JSONDecodeError:
            raise Skip(say("data.skip_tools_not_json")) from None
    listed = [tools] if isinstance(tools, dict) else tools
    if not isinstance(listed, list) or not all(isinstance(t, dict) for t in listed):
        raise Skip(say("data.skip_bad_tools"))
    return given if given is not None and listed is tools else json.dumps(listed, ensure_ascii=False)


def with_system(turns: list[Message], system: str, tools: str) -> list[Message]:
    if not (system or tools):
        return turns
    head: Message = {"role": "system", "content": system}
    if tools:
        head["tools"] = tools
    return [head] + turns
