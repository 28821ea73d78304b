"""The Chat tab: load the base model and adapters, then see base and adapter answer side by side."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import gradio as gr

from app.adapter_picker import adapter_picker
from app.form import ConfigForm
from app.i18n import Labels, T
from studio.chat import AdapterError, ChatEngine, EngineError
from studio.config import ConfigError
from studio.modeling.loader import ModelLoadError
from studio.service import TrainingService

ERRORS = (AdapterError, EngineError, ModelLoadError, ConfigError, OSError, ValueError, RuntimeError)
MODES = [(T.mode_compare, "compare"), (T.mode_base, "base"), (T.mode_adapter, "adapter")]
GENERATION_FIELDS = ["system_prompt", "max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "seed"]


@dataclass
class ChatSession:
    """The engine is shared by every browser (one model in memory); Stop ends the answer in progress."""

    engine: ChatEngine
    stop: threading.Event


@dataclass
class ChatTab:
    adapter: gr.Dropdown


def build(service: TrainingService, engine: ChatEngine, form: ConfigForm, labels: Labels) -> ChatTab:
    session = ChatSession(engine, threading.Event())
    with gr.Row():
        load = labels.add(gr.Button(T.load_model("en"), variant="primary", scale=1, elem_id="qs-chat-load"), T.load_model, "value")
        unload = labels.add(gr.Button(T.unload_model("en"), scale=1), T.unload_model, "value")
        status = gr.Markdown(T.model_status_none("en"), elem_id="qs-chat-status")
    adapter = adapter_picker(service, labels, "qs-chat-adapter")
    with gr.Row():
        load_adapter = labels.add(gr.Button(T.load_adapter("en"), size="sm", elem_id="qs-chat-load-adapter"), T.load_adapter, "value")
        unload_adapter = labels.add(gr.Button(T.unload_adapter("en"), size="sm"), T.unload_adapter, "value")
    mode = labels.add_choices(gr.Radio([(t("en"), v) for t, v in MODES], value="compare", label=T.chat_mode("en")), MODES)
    labels.add(mode, T.chat_mode)
    with gr.Row():
        with gr.Column() as base_column:
            base_chat = labels.add(gr.Chatbot(label=T.base_column("en"), height=380, elem_id="qs-chat-base"), T.base_column)
            base_speed = gr.Markdown()
        with gr.Column() as adapter_column:
            adapter_chat = labels.add(gr.Chatbot(label=T.adapter_column("en"), height=380, elem_id="qs-chat-adapter-answers"), T.adapter_column)
            adapter_speed = gr.Markdown()
    prompt = labels.add(gr.Textbox(label=T.message("en"), lines=2, elem_id="qs-chat-prompt"), T.message)
    with gr.Row():
        send = labels.add(gr.Button(T.send("en"), variant="primary", elem_id="qs-chat-send"), T.send, "value")
        stop = labels.add(gr.Button(T.stop("en"), variant="stop"), T.stop, "value")
        clear = labels.add(gr.Button(T.clear("en")), T.clear, "value")
    with labels.add(gr.Accordion(T.generation("en"), open=False), T.generation):
        with gr.Row():
            for name in GENERATION_FIELDS:
                form.add("generation", name, min_width=160)

    load.click(lambda *v: _load_model(session, form, *v), form.components, status)
    unload.click(lambda: session.engine.unload(), None, status)
    load_adapter.click(lambda path: _load_adapter(session, path), adapter, status)
    unload_adapter.click(lambda path: _unload_adapter(session, path), adapter, status)
    mode.change(lambda m: (gr.update(visible=m != "adapter"), gr.update(visible=m != "base")), mode, [base_column, adapter_column])
    stop.click(lambda: session.stop.set(), None, None)
    clear.click(lambda: ([], [], "", ""), None, [base_chat, adapter_chat, base_speed, adapter_speed])
    inputs = [prompt, mode, adapter, base_chat, adapter_chat, *form.components]
    outputs = [base_chat, adapter_chat, base_speed, adapter_speed, prompt, status]
    send.click(lambda *v: (yield from _send(session, form, *v)), inputs, outputs)
    prompt.submit(lambda *v: (yield from _send(session, form, *v)), inputs, outputs)
    return ChatTab(adapter)


def _load_model(session: ChatSession, form: ConfigForm, *values) -> str:
    try:
        config = form.read(*values)
        return session.engine.load(config.model, config.quantization)
    except ERRORS as error:
        return f"**{T.error('en')}:** {error}"


def _adapter_name(session: ChatSession, path: str | None) -> str | None:
    for name, info in session.engine.adapters.items():
        if info.path == path or name == path:
            return name
    return None


def _load_adapter(session: ChatSession, path: str | None) -> str:
    if not path:
        return f"**{T.error('en')}:** choose an adapter (Refresh lists every finished run) or type a folder."
    try:
        info = session.engine.load_adapter(path)
    except ERRORS as error:
        return f"**{T.error('en')}:** {error}"
    loaded = ", ".join(session.engine.adapters)
    return f"Adapter **{info.name}** loaded onto {session.engine.model_name} (loaded adapters: {loaded}; base loads: {session.engine.base_loads})."


def _unload_adapter(session: ChatSession, path: str | None) -> str:
    name = _adapter_name(session, path)
    if name is None:
        return "That adapter is not loaded."
    session.engine.unload_adapter(name)
    return f"Adapter {name} unloaded."


def _send(session: ChatSession, form: ConfigForm, text, mode, adapter_path, base_history, adapter_history, *values):
    base_history, adapter_history = list(base_history or []), list(adapter_history or [])
    if not text or not text.strip():
        yield base_history, adapter_history, gr.skip(), gr.skip(), text, gr.skip()
        return
    try:
        generation = form.read(*values).generation
        name = _adapter_name(session, adapter_path)
        if mode != "base" and name is None:
            raise AdapterError("Load an adapter first (or choose 'Base only').")
        columns = [c for c in (("base", None, base_history), ("adapter", name, adapter_history)) if mode in ("compare", c[0])]
        conversations = [_history_messages(h) + [{"role": "user", "content": text}] for _, _, h in columns]
        session.stop.clear()
        for history in (h for _, _, h in columns):
            history += [{"role": "user", "content": text}, {"role": "assistant", "content": ""}]
        for answers in session.engine.stream(conversations, [n for _, n, _ in columns], generation, session.stop):
            speeds = {}
            for (kind, _, history), answer in zip(columns, answers):
                history[-1] = {"role": "assistant", "content": answer.text}
                speeds[kind] = f"{answer.tokens} tokens · {answer.tokens_per_second:.1f} tok/s"
            yield base_history, adapter_history, speeds.get("base", ""), speeds.get("adapter", ""), "", gr.skip()
    except ERRORS as error:
        yield base_history, adapter_history, gr.skip(), gr.skip(), text, f"**{T.error('en')}:** {error}"


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
