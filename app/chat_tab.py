"""The Chat tab: load the base model and adapters, then see base and adapter answer side by side."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import gradio as gr

from app import adapter_picker
from app.feedback import failure, said
from app.i18n import T
from app.page import Page
from studio.errors import StudioError
from studio.locales import in_language

MODES = [(T.mode_compare, "compare"), (T.mode_base, "base"), (T.mode_adapter, "adapter")]
GENERATION_FIELDS = ["system_prompt", "max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "seed"]


@dataclass
class ChatTab:
    load: gr.Button
    unload: gr.Button
    status: gr.Markdown
    picker: adapter_picker.AdapterPicker
    load_adapter: gr.Button
    unload_adapter: gr.Button
    mode: gr.Radio
    base_column: gr.Column
    adapter_column: gr.Column
    base_chat: gr.Chatbot
    adapter_chat: gr.Chatbot
    base_speed: gr.Markdown
    adapter_speed: gr.Markdown
    prompt: gr.Textbox
    send: gr.Button
    stop: gr.Button
    clear: gr.Button


def layout(page: Page) -> ChatTab:
    labels = page.labels
    with gr.Row():
        load = labels.add(
            gr.Button(T.load_model("en"), variant="primary", scale=1, elem_id="qs-chat-load"), T.load_model, "value"
        )
        unload = labels.add(gr.Button(T.unload_model("en"), scale=1), T.unload_model, "value")
        status = gr.Markdown(T.model_status_none("en"), elem_id="qs-chat-status")
    picker = adapter_picker.layout(labels, "qs-chat-adapter")
    with gr.Row():
        load_adapter = labels.add(
            gr.Button(T.load_adapter("en"), size="sm", elem_id="qs-chat-load-adapter"), T.load_adapter, "value"
        )
        unload_adapter = labels.add(gr.Button(T.unload_adapter("en"), size="sm"), T.unload_adapter, "value")
    mode = labels.add_choices(
        gr.Radio([(t("en"), v) for t, v in MODES], value="compare", label=T.chat_mode("en")), MODES
    )
    labels.add(mode, T.chat_mode)
    with gr.Row():
        with gr.Column() as base_column:
            base_chat = labels.add(
                gr.Chatbot(label=T.base_column("en"), height=380, elem_id="qs-chat-base"), T.base_column
            )
            base_speed = gr.Markdown()
        with gr.Column() as adapter_column:
            adapter_chat = labels.add(
                gr.Chatbot(label=T.adapter_column("en"), height=380, elem_id="qs-chat-adapter-answers"),
                T.adapter_column,
            )
            adapter_speed = gr.Markdown()
    prompt = labels.add(gr.Textbox(label=T.message("en"), lines=2, elem_id="qs-chat-prompt"), T.message)
    with gr.Row():
        send = labels.add(gr.Button(T.send("en"), variant="primary", elem_id="qs-chat-send"), T.send, "value")
        stop = labels.add(gr.Button(T.stop("en"), variant="stop"), T.stop, "value")
        clear = labels.add(gr.Button(T.clear("en")), T.clear, "value")
    with labels.add(gr.Accordion(T.generation("en"), open=False), T.generation):
        with gr.Row():
            for name in GENERATION_FIELDS:
                page.form.add(f"generation.{name}", min_width=160)
    return ChatTab(
        load,
        unload,
        status,
        picker,
        load_adapter,
        unload_adapter,
        mode,
        base_column,
        adapter_column,
        base_chat,
        adapter_chat,
        base_speed,
        adapter_speed,
        prompt,
        send,
        stop,
        clear,
    )


def wire(page: Page, tab: ChatTab) -> None:
    studio, lang, stop = page.studio, page.lang, threading.Event()  # Stop ends the answer in progress
    adapter_picker.wire(studio, tab.picker, lang)
    last = gr.State(said(T.model_status_none, "en")[1])  # the status line in both languages, for a language switch
    status = [tab.status, last]
    tab.load.click(
        lambda v: said(_load_model(page, v), v[lang]), {lang} | page.form.inputs, status, api_name="load_model"
    )
    tab.unload.click(lambda lng: said(_unload_model(page), lng), lang, status, api_name="unload_model")
    tab.load_adapter.click(
        lambda path, lng: said(_load_adapter(page, path), lng),
        [tab.picker.dropdown, lang],
        status,
        api_name="load_adapter",
    )
    tab.unload_adapter.click(
        lambda path, lng: said(_unload_adapter(page, path), lng),
        [tab.picker.dropdown, lang],
        status,
        api_name="unload_adapter",
    )
    lang.change(lambda both, lng: both[lng] if both else gr.skip(), [last, lang], tab.status, api_visibility="private")
    tab.mode.change(
        lambda m: (gr.update(visible=m != "adapter"), gr.update(visible=m != "base")),
        tab.mode,
        [tab.base_column, tab.adapter_column],
        api_visibility="private",
    )
    tab.stop.click(lambda: stop.set(), None, None, api_name="stop")
    tab.clear.click(
        lambda: ([], [], "", ""),
        None,
        [tab.base_chat, tab.adapter_chat, tab.base_speed, tab.adapter_speed],
        api_visibility="private",
    )
    inputs = {lang, tab.prompt, tab.mode, tab.picker.dropdown, tab.base_chat, tab.adapter_chat} | page.form.inputs
    outputs = [tab.base_chat, tab.adapter_chat, tab.base_speed, tab.adapter_speed, tab.prompt, *status]
    send = lambda v: (yield from _send(page, tab, stop, v))  # noqa: E731
    # No progress animation: drawn without a GPU, a pulsing border (or timer) costs the browser a good part of a
    # core all along, which the model's own threads then lack (bench/chat_stream_speed.py). The greyed Send button
    # and the growing answers say that it is answering.
    for event, visibility in (
        (tab.send.click, {"api_name": "send"}),
        (tab.prompt.submit, {"api_visibility": "private"}),
    ):
        event(lambda: gr.update(interactive=False), None, tab.send, api_visibility="private", queue=False).then(
            send, inputs, outputs, show_progress="hidden", **visibility
        ).then(lambda: gr.update(interactive=True), None, tab.send, api_visibility="private", queue=False)


def _load_model(page: Page, values) -> Callable[[str], str]:
    """What to say (a function of the language) once the base model is loaded, or why not."""
    try:
        config = page.form.read(values)
        # a form set up for a full or freeze run loads the base its model's tensors can replace
        whole = config.finetuning.trains_whole_model
        loaded = page.studio.load_model(config.model, config.quantization, whole_model=whole)
    except Exception as error:
        return failure(error)
    return partial(in_language, loaded)


def _unload_model(page: Page) -> Callable[[str], str]:
    try:
        unloaded = page.studio.unload_model()
    except Exception as error:
        return failure(error)
    return partial(in_language, unloaded)


def _adapter_name(page: Page, path: str | None) -> str | None:
    for name, info in page.studio.engine.adapters.items():
        if info.path == path or name == path:
            return name
    return None


def _load_adapter(page: Page, path: str | None) -> Callable[[str], str]:
    if not path:
        return lambda lang: f"**{T.error(lang)}:** {T.choose_adapter(lang)}"
    try:
        info = page.studio.load_adapter(path)
    except Exception as error:
        return failure(error)
    engine = page.studio.engine
    loaded = ", ".join(engine.adapters)
    if info.whole_model:
        return partial(
            T.whole_model_loaded, name=f"**{info.name}**", method=info.method, model=engine.model_name, all=loaded
        )
    return partial(T.adapter_loaded, name=f"**{info.name}**", model=engine.model_name, all=loaded)


def _unload_adapter(page: Page, path: str | None) -> Callable[[str], str]:
    name = _adapter_name(page, path)
    if name is None:
        return T.adapter_not_loaded
    try:
        page.studio.unload_adapter(name)
    except Exception as error:
        return failure(error)
    return partial(T.adapter_unloaded, name=name)


def _send(page: Page, tab: ChatTab, stop: threading.Event, values):
    text, mode = values[tab.prompt], values[tab.mode]
    base_history, adapter_history = list(values[tab.base_chat] or []), list(values[tab.adapter_chat] or [])
    if not text or not text.strip():
        yield base_history, adapter_history, gr.skip(), gr.skip(), text, gr.skip(), gr.skip()
        return
    try:
        generation = page.form.read(values).generation
        name = _adapter_name(page, values[tab.picker.dropdown])
        if mode != "base" and name is None:
            raise StudioError("page.load_adapter_first")
        columns = [
            c for c in (("base", None, base_history), ("adapter", name, adapter_history)) if mode in ("compare", c[0])
        ]
        conversations = [_history_messages(h) + [{"role": "user", "content": text}] for _, _, h in columns]
        stop.clear()
        for history in (h for _, _, h in columns):
            history += [{"role": "user", "content": text}, {"role": "assistant", "content": ""}]
        answers = page.studio.stream(conversations, [n for _, n, _ in columns], generation, stop)
        with contextlib.closing(answers):  # now, not when collected: a page gone mid-answer ends the generation
            for update in answers:  # four a second, each redrawing both panes, rather than one per token
                speeds = _show(columns, update, values[page.lang])
                yield base_history, adapter_history, speeds.get("base", ""), speeds.get("adapter", ""), "", *_SAME
    except Exception as error:
        yield base_history, adapter_history, gr.skip(), gr.skip(), text, *said(failure(error), values[page.lang])


_SAME = (gr.skip(), gr.skip())  # the status line and its memory, while an answer streams


def _show(columns: list, answers: list, lang: str) -> dict[str, str]:
    """Each answer into its pane's last message; each pane's speed line by pane kind."""
    speeds = {}
    for (kind, _, history), answer in zip(columns, answers):
        history[-1] = {"role": "assistant", "content": answer.text}
        speeds[kind] = T.answer_speed(lang, tokens=answer.tokens, rate=answer.tokens_per_second)
    return speeds


def _history_messages(history: list) -> list[dict]:
    """Chatbot messages back to plain role/content pairs (Gradio may wrap content in lists)."""
    messages = []
    for message in history:
        content = message["content"] if isinstance(message, dict) else message.content
        if isinstance(content, list):
            content = "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)
        role = message["role"] if isinstance(message, dict) else message.role
        messages.append({"role": role, "content": content})
    return messages
