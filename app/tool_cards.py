"""How a chat with tools and thinking shows in a Chatbot, and how its messages turn back into the conversation.

An answer shows as up to four kinds of message: its thought (a folded "thought" block, Gradio's metadata title,
open with a spinner while it streams and folded once the answer begins), its text, a card per function call (the
name in the title, the call as JSON in the body) and a card naming a call that could not be read. A tool's result,
sent by the user, shows as a titled user message. Each kind is marked in the message's metadata id ("kind:turn"),
so the pane itself stays the one record of the conversation: read back, thoughts are left out (earlier thoughts
never reach a prompt), a call card becomes the function_call turn training knows, a result the observation turn.
"""

from __future__ import annotations

import json
from typing import Any

from app.i18n import T
from studio.locales import in_language

THOUGHT, CALL, CALL_ERROR, RESULT = "qs-thought", "qs-call", "qs-call-error", "qs-tool-result"
EXAMPLE = json.dumps(
    [
        {
            "name": "get_weather",
            "description": "The current weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        }
    ],
    indent=2,
)


def _titled(role: str, content: str, title: str, kind: str, turn: int | str, **metadata: Any) -> dict:
    return {"role": role, "content": content, "metadata": {"title": title, "id": f"{kind}:{turn}", **metadata}}


def question(text: str, as_result: bool, lang: str, turn: int) -> dict:
    """What the user sends: a message, or a tool's result."""
    if as_result:
        return _titled("user", text, T.chat_observation_title(lang), RESULT, turn)
    return {"role": "user", "content": text}


def answer_messages(answer: Any, lang: str, turn: int) -> list[dict]:
    """An answer so far (studio.chat.streaming.Answer: text, thinking, calls, call_error, done) as the messages that
    show it; `turn`: where it starts in its pane, to tell cards apart."""
    shown = []
    if answer.thinking:
        status = "done" if answer.text or answer.calls or answer.call_error or answer.done else "pending"
        shown.append(_titled("assistant", answer.thinking, T.chat_thought_title(lang), THOUGHT, turn, status=status))
    if answer.text or not (answer.thinking or answer.calls):
        shown.append({"role": "assistant", "content": answer.text})
    for index, call in enumerate(answer.calls):
        body = json.dumps({"name": call.name, "arguments": json.loads(call.arguments)}, ensure_ascii=False, indent=2)
        title = T.chat_call_title(lang, name=call.name)
        shown.append(_titled("assistant", f"```json\n{body}\n```", title, CALL, f"{turn}.{index}"))
    if answer.call_error is not None:
        error = in_language(answer.call_error, lang)
        shown.append(_titled("assistant", error, T.chat_call_error_title(lang), CALL_ERROR, turn))
    return shown


def conversation(history: list) -> list[dict]:
    """A pane's messages back to the conversation's turns (user, observation, assistant, function_call)."""
    turns: list[dict] = []
    texts: list[str] | None = None  # the answer being read: its text messages and its calls
    calls: list[dict] = []
    for message in history:
        role, content, kind = _read(message)
        if role == "assistant" and kind not in (THOUGHT, CALL_ERROR):
            texts = [] if texts is None else texts
            if kind == CALL:  # the card's body is the call as training data writes one: {"name", "arguments"}
                calls.append(json.loads(content.strip().removeprefix("```json").removesuffix("```")))
            else:
                texts.append(content)
        elif role == "user":
            turns += _answer(texts, calls)
            texts, calls = None, []
            turns.append({"role": "observation" if kind == RESULT else "user", "content": content})
    return turns + _answer(texts, calls)


def _answer(texts: list[str] | None, calls: list[dict]) -> list[dict]:
    if calls:  # a function_call turn (studio.chat.tools); its text beside the calls left out, as LLaMA-Factory's chat
        return [{"role": "function_call", "content": json.dumps(calls, ensure_ascii=False)}]
    return [] if texts is None else [{"role": "assistant", "content": "".join(texts)}]


def _read(message: Any) -> tuple[str, str, str]:
    """(role, text, kind) of a Chatbot message."""
    metadata = message_field(message, "metadata") or {}
    kind = str(metadata.get("id") or "").split(":")[0]
    return str(message_field(message, "role") or ""), content_text(message_field(message, "content")), kind


def message_field(message: Any, key: str) -> Any:
    """A field of a Chatbot message (role, content, metadata), however Gradio hands it over: a dict or an object."""
    return message.get(key) if isinstance(message, dict) else getattr(message, key, None)


def content_text(content: Any) -> str:
    """A message's text: its content, or the text parts of a list of parts (a file part has none)."""
    if isinstance(content, list):
        return "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)
    return content if isinstance(content, str) else ""


def ends_with_call(history: list) -> bool:
    """Whether the pane's last answer made calls: the user is then asked for their results."""
    turns = conversation(history or [])
    return bool(turns) and turns[-1]["role"] == "function_call"
