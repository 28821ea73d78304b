"""Alpaca and sharegpt records turned into one shape: a list of chat messages."""

from __future__ import annotations

from dataclasses import dataclass, field

from studio.data.registry import DataError, DatasetSpec

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}


@dataclass
class Conversations:
    """The usable examples of one dataset, and how many records were skipped and why."""

    dataset: str
    examples: list[list[Message]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def to_conversations(spec: DatasetSpec, records: list[dict], system_prompt: str | None = None) -> Conversations:
    _check_columns(spec, records)
    convert = _alpaca if spec.formatting == "alpaca" else _sharegpt
    result = Conversations(spec.name)
    for record in records:
        messages, problem = convert(spec, record)
        if problem:
            result.skip(problem)
            continue
        system = system_prompt if system_prompt is not None else _text(record.get(spec.column("system") or ""))
        if system and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": system})
        elif system_prompt is not None and messages[0]["role"] == "system":
            messages[0] = {"role": "system", "content": system_prompt}
        result.examples.append(messages)
    if not result.examples:
        reasons = ", ".join(f"{n} {r}" for r, n in result.skipped.items())
        raise DataError(f"Dataset '{spec.name}': no usable example ({reasons}).")
    return result


def _check_columns(spec: DatasetSpec, records: list[dict]) -> None:
    required = ["prompt", "response"] if spec.formatting == "alpaca" else ["messages"]
    present = set().union(*(r.keys() for r in records[:100]))
    missing = [spec.column(role) for role in required if spec.column(role) not in present]
    if missing:
        raise DataError(
            f"Dataset '{spec.name}' ({spec.formatting} format) has no column {', '.join(repr(m) for m in missing)}; "
            f"its columns are {sorted(present)}. Map them in dataset_info.json, e.g. "
            f'"columns": {{"prompt": "question", "response": "answer"}}, or set "formatting".'
        )


def _text(value: object) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _alpaca(spec: DatasetSpec, record: dict) -> tuple[list[Message], str | None]:
    prompt = _text(record.get(spec.column("prompt")))
    query = _text(record.get(spec.column("query") or ""))
    response = _text(record.get(spec.column("response")))
    user = "\n".join(part for part in (prompt, query) if part.strip())
    if not user.strip():
        return [], "with an empty instruction"
    if not response.strip():
        return [], "with an empty output"
    messages: list[Message] = []
    for turn in record.get(spec.column("history") or "") or []:
        if not (isinstance(turn, (list, tuple)) and len(turn) == 2):
            return [], "with a history that is not a list of [question, answer] pairs"
        messages += [{"role": "user", "content": _text(turn[0])}, {"role": "assistant", "content": _text(turn[1])}]
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": response}]
    return messages, None


def _sharegpt(spec: DatasetSpec, record: dict) -> tuple[list[Message], str | None]:
    tags = spec.tags
    roles = {
        tags.user_tag: "user",
        tags.observation_tag: "user",
        tags.assistant_tag: "assistant",
        tags.function_tag: "assistant",
        tags.system_tag: "system",
    }
    raw = record.get(spec.column("messages"))
    if not isinstance(raw, list) or not raw:
        return [], "with no message list"
    messages: list[Message] = []
    for turn in raw:
        role = roles.get(turn.get(tags.role_tag)) if isinstance(turn, dict) else None
        if role is None:
            return [], f"with a role other than {sorted(roles)} (check 'tags' in dataset_info.json)"
        messages.append({"role": role, "content": _text(turn.get(tags.content_tag))})
    dialogue = messages[1:] if messages[0]["role"] == "system" else messages
    expected = ["user", "assistant"] * (len(dialogue) // 2 + 1)
    if not dialogue or [m["role"] for m in dialogue] != expected[: len(dialogue)] or dialogue[-1]["role"] != "assistant":
        return [], "whose turns do not alternate user/assistant ending with the assistant"
    return messages, None
