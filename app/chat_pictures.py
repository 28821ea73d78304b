"""Pictures in the Chat tab: the upload beside the message, a sent picture shown in both panes, and a pane's
history read back into a conversation with `<image>` placeholders and its pictures' files.

The upload is shown only while a vision-language model is loaded. A sent picture becomes a message of its own
in each pane (the same picture for base and adapter), just before the question it goes with; reading a pane
back, each picture message puts one `<image>` before the next user turn, in order, as training data writes them.
The picture's file is the one Gradio keeps in its upload cache: Gradio refuses a file path from a client that is
not in that cache, so a history sent by a script cannot name other files.
"""

from __future__ import annotations

from typing import Any

import gradio as gr
from gradio.events import Dependency

from app import tool_cards
from app.i18n import Labels, T
from app.page import Page
from studio.api import IMAGE_PLACEHOLDER


def layout(labels: Labels) -> gr.Image:
    picture = gr.Image(
        label=T.chat_picture("en"),
        type="filepath",
        sources=["upload", "clipboard"],
        height=140,
        visible=False,
        scale=1,
        elem_id="qs-chat-picture",
    )
    return labels.add(picture, T.chat_picture)


def shown_for(reads_pictures: bool) -> dict:
    """The upload, shown for a vision-language model and emptied and hidden for a text one."""
    return gr.update(visible=reads_pictures) if reads_pictures else gr.update(visible=False, value=None)


def wire(page: Page, picture: gr.Image, prompt: gr.Textbox, changed: list[Dependency], sent: list[Dependency]) -> None:
    """The upload shown or hidden once the model `changed` (loaded, unloaded), and emptied once its message was
    `sent` (the message box then emptied; a refused message keeps both, to retry)."""
    for event in changed:
        event.then(lambda: shown_for(page.studio.engine.sees_pictures), None, picture, api_visibility="private")
    for event in sent:
        event.then(lambda text: gr.skip() if text else None, prompt, picture, api_visibility="private", queue=False)


def with_new_picture(conversation: list[dict]) -> list[dict]:
    """The conversation whose last turn goes with a new picture: its placeholder put before the text, unless the
    user wrote one."""
    last = conversation[-1]
    if IMAGE_PLACEHOLDER in last["content"]:
        return conversation
    return [*conversation[:-1], dict(last, content=IMAGE_PLACEHOLDER + last["content"])]


def message(path: str) -> dict:
    return {"role": "user", "content": {"path": path}}


def split(history: list) -> tuple[list, list[str]]:
    """(the history with each picture message turned into a placeholder before the next user text, the pictures'
    files in order)."""
    pictures: list[str] = []
    kept: list = []
    pending = 0
    for item in history:
        role, content = tool_cards.message_field(item, "role"), tool_cards.message_field(item, "content")
        path = _picture_path(content) if role == "user" else None
        if path is not None:
            pictures.append(path)
            pending += 1
            continue
        if pending and role == "user":
            text = IMAGE_PLACEHOLDER * pending + tool_cards.content_text(content)
            item = {"role": role, "content": text, "metadata": tool_cards.message_field(item, "metadata")}
            pending = 0
        kept.append(item)
    return kept, pictures


def _picture_path(content: Any) -> str | None:
    """The file of a picture message: a file ({"path": ...}) or, among its parts, a file part ({"file": ...})."""
    for part in content if isinstance(content, list) else [content]:
        if not isinstance(part, dict):
            continue
        file = part if "path" in part and "text" not in part else part.get("file")
        if isinstance(file, dict) and file.get("path"):
            return str(file["path"])
    return None
