"""The Chat tab: load the base model and adapters, then see base and adapter answer side by side."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import gradio as gr
from gradio.events import Dependency

from app import adapter_mix, adapter_picker, chat_pictures, tool_cards
from app.feedback import failure, said
from app.i18n import T
from app.page import Page
from studio.config import ChatConfig
from studio.errors import StudioError
from studio.locales import in_language, say

MODES = [(T.mode_compare, "compare"), (T.mode_base, "base"), (T.mode_adapter, "adapter")]
GENERATION_FIELDS = ["system_prompt", "max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "seed"]
VLLM_FIELDS = [name for name in ChatConfig.model_fields if name != "engine"]  # chat.*, shown for vllm


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
    picture: gr.Image  # shown while a vision-language model is loaded
    send: gr.Button
    stop: gr.Button
    clear: gr.Button
    as_result: gr.Checkbox  # send the message as a tool's result
    tools: gr.Textbox
    thinking: gr.Checkbox
    mix: adapter_mix.AdapterMix
    engine: gr.Dropdown  # chat.engine, used when the model is loaded
    vllm_settings: gr.Column  # chat.* for vLLM, shown while the engine is vllm


def layout(page: Page) -> ChatTab:
    labels = page.labels
    with gr.Row():
        load = labels.add(
            gr.Button(T.load_model("en"), variant="primary", scale=1, elem_id="qs-chat-load"), T.load_model, "value"
        )
        unload = labels.add(gr.Button(T.unload_model("en"), scale=1), T.unload_model, "value")
        status = gr.Markdown(T.model_status_none("en"), elem_id="qs-chat-status")
    engine, vllm_settings = _engine_row(page)
    picker = adapter_picker.layout(labels, "qs-chat-adapter")
    with gr.Row():
        load_adapter = labels.add(
            gr.Button(T.load_adapter("en"), size="sm", elem_id="qs-chat-load-adapter"), T.load_adapter, "value"
        )
        unload_adapter = labels.add(gr.Button(T.unload_adapter("en"), size="sm"), T.unload_adapter, "value")
    mix = adapter_mix.layout(labels, "qs-chat", T.mix_note, chat=True)
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
    with gr.Row(equal_height=True):
        prompt = labels.add(gr.Textbox(label=T.message("en"), lines=2, scale=4, elem_id="qs-chat-prompt"), T.message)
        picture = chat_pictures.layout(labels)
    with gr.Row():
        send = labels.add(gr.Button(T.send("en"), variant="primary", elem_id="qs-chat-send"), T.send, "value")
        stop = labels.add(gr.Button(T.stop("en"), variant="stop"), T.stop, "value")
        clear = labels.add(gr.Button(T.clear("en")), T.clear, "value")
    as_result = gr.Checkbox(label=T.chat_reply_as_tool("en"), elem_id="qs-chat-as-result")
    labels.add(as_result, T.chat_reply_as_tool)
    tools, thinking = _tools_and_thinking(page)
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
        picture,
        send,
        stop,
        clear,
        as_result,
        tools,
        thinking,
        mix,
        engine,
        vllm_settings,
    )


def _engine_row(page: Page) -> tuple[gr.Dropdown, gr.Column]:
    """The engine the Load button loads with (chat.engine), and vLLM's settings beside it when it is vllm."""
    with gr.Row(equal_height=True):
        engine = page.form.add("chat.engine", scale=1, min_width=160)
        assert isinstance(engine, gr.Dropdown)  # a choice of names (Literal) is a dropdown (app.form)
        with gr.Column(scale=4, visible=page.form.default("chat.engine") == "vllm") as vllm_settings:
            with gr.Row():
                for name in VLLM_FIELDS:
                    page.form.add(f"chat.{name}", min_width=160)
    return engine, vllm_settings


def _tools_and_thinking(page: Page) -> tuple[gr.Textbox, gr.Checkbox]:
    """The tools box and the thinking switch (which the loaded template enables: see _thinking_switch)."""
    labels = page.labels
    with labels.add(
        gr.Accordion(T.chat_tools_thinking("en"), open=False, elem_id="qs-chat-tools-box"), T.chat_tools_thinking
    ):
        with gr.Row():
            tools = gr.Textbox(
                label=T.chat_tools("en"), lines=6, placeholder=tool_cards.EXAMPLE, scale=3, elem_id="qs-chat-tools"
            )
            thinking = gr.Checkbox(
                label=T.chat_thinking("en"),
                info=T.chat_thinking_no_model("en"),
                interactive=False,
                scale=1,
                elem_id="qs-chat-thinking",
            )
    labels.add(tools, T.chat_tools)
    labels.add(thinking, T.chat_thinking)
    return tools, thinking


def wire(page: Page, tab: ChatTab) -> None:
    studio, lang, stop = page.studio, page.lang, threading.Event()  # Stop ends the answer in progress
    adapter_picker.wire(studio, tab.picker, lang, combinations=True)
    last = gr.State(said(T.model_status_none, "en")[1])  # the status line in both languages, for a language switch
    status = [tab.status, last]
    note = gr.State(said(T.chat_thinking_no_model, "en")[1])  # why the thinking switch is as it is, likewise
    mixable = (lambda: adapter_mix.loaded_choices(page), None, tab.mix.adapters)  # what Combine may mix now
    loaded = tab.load.click(
        lambda v: said(_load_model(page, v), v[lang]), {lang} | page.form.inputs, status, api_name="load_model"
    )
    unloaded = tab.unload.click(lambda lng: said(_unload_model(page), lng), lang, status, api_name="unload_model")
    for event in (loaded, unloaded):
        event.then(lambda lng: _thinking_switch(page, lng), lang, [tab.thinking, note], api_visibility="private")
    unloaded.then(*mixable, api_visibility="private")
    _wire_engine(page, tab, loaded)
    _wire_adapters(page, tab, status, mixable)
    lang.change(lambda both, lng: gr.update(info=both[lng]), [note, lang], tab.thinking, api_visibility="private")
    lang.change(lambda both, lng: both[lng] if both else gr.skip(), [last, lang], tab.status, api_visibility="private")
    tab.mode.change(
        lambda m: (gr.update(visible=m != "adapter"), gr.update(visible=m != "base")),
        tab.mode,
        [tab.base_column, tab.adapter_column],
        api_visibility="private",
    )
    tab.stop.click(lambda: stop.set(), None, None, api_name="stop")
    tab.clear.click(
        lambda: ([], [], "", "", False),
        None,
        [tab.base_chat, tab.adapter_chat, tab.base_speed, tab.adapter_speed, tab.as_result],
        api_visibility="private",
    )
    sent = _wire_send(page, tab, stop, status)
    chat_pictures.wire(page, tab.picture, tab.prompt, changed=[loaded, unloaded], sent=sent)


def _wire_engine(page: Page, tab: ChatTab, loaded: Dependency) -> None:
    """vLLM's settings shown while the engine is vllm; once a model that answers as the base alone is loaded (a GGUF
    file in llama.cpp, which takes no adapter: the engine's base_only), Chat answers in the base pane alone."""
    tab.engine.change(lambda e: gr.update(visible=e == "vllm"), tab.engine, tab.vllm_settings, api_visibility="private")
    loaded.then(lambda: "base" if page.studio.engine.base_only else gr.skip(), None, tab.mode, api_visibility="private")


def _wire_adapters(page: Page, tab: ChatTab, status: list, mixable: tuple) -> None:
    """Load and unload an adapter (then Combine offers what is loaded now), and Combine's own buttons."""
    tab.load_adapter.click(
        lambda path, lng: said(_load_adapter(page, path), lng),
        [tab.picker.dropdown, page.lang],
        status,
        api_name="load_adapter",
    ).then(*mixable, api_visibility="private")
    tab.unload_adapter.click(
        lambda path, lng: said(_unload_adapter(page, path), lng),
        [tab.picker.dropdown, page.lang],
        status,
        api_name="unload_adapter",
    ).then(*mixable, api_visibility="private")
    adapter_mix.wire_chat(page, tab.mix, tab.picker, status)


def _wire_send(page: Page, tab: ChatTab, stop: threading.Event, status: list) -> list[Dependency]:
    """Send and Enter in the message box: the answers stream into the panes, the Send button greyed meanwhile;
    an answer that called tools asks for their results next. Returns each one's answering step."""
    inputs = {page.lang, tab.prompt, tab.mode, tab.picker.dropdown, tab.base_chat, tab.adapter_chat}
    inputs |= {tab.as_result, tab.tools, tab.thinking, tab.picture} | page.form.inputs
    outputs = [tab.base_chat, tab.adapter_chat, tab.base_speed, tab.adapter_speed, tab.prompt, *status]
    send = lambda v: (yield from _send(page, tab, stop, v))  # noqa: E731
    answering = []
    # No progress animation: drawn without a GPU, a pulsing border (or timer) costs the browser a good part of a
    # core all along, which the model's own threads then lack (bench/chat_stream_speed.py). The greyed Send button
    # and the growing answers say that it is answering.
    for event, visibility in (
        (tab.send.click, {"api_name": "send"}),
        (tab.prompt.submit, {"api_visibility": "private"}),
    ):
        answered = event(lambda: gr.update(interactive=False), None, tab.send, api_visibility="private", queue=False)
        answered = answered.then(send, inputs, outputs, show_progress="hidden", **visibility)
        answered.then(lambda: gr.update(interactive=True), None, tab.send, api_visibility="private", queue=False)
        answered.then(
            lambda *panes: any(tool_cards.ends_with_call(p) for p in panes),
            [tab.base_chat, tab.adapter_chat],
            tab.as_result,
            api_visibility="private",
            queue=False,
        )
        answering.append(answered)
    return answering


def _load_model(page: Page, values) -> Callable[[str], str]:
    """What to say (a function of the language) once the base model is loaded, or why not."""
    try:
        config = page.form.read(values)
        # a form set up for a full or freeze run loads the base its model's tensors can replace
        whole = config.finetuning.trains_whole_model
        loaded = page.studio.load_model(config.model, config.quantization, whole_model=whole, chat=config.chat)
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
    text, mode, lang = values[tab.prompt], values[tab.mode], values[page.lang]
    base_history, adapter_history = list(values[tab.base_chat] or []), list(values[tab.adapter_chat] or [])
    if not text or not text.strip():
        yield base_history, adapter_history, gr.skip(), gr.skip(), text, gr.skip(), gr.skip()
        return
    before, answered = (list(base_history), list(adapter_history)), False
    try:
        generation = page.form.read(values).generation
        name = _adapter_name(page, values[tab.picker.dropdown])
        if mode != "base" and name is None:
            raise StudioError("page.load_adapter_first")
        columns = [
            c for c in (("base", None, base_history), ("adapter", name, adapter_history)) if mode in ("compare", c[0])
        ]
        as_result = bool(values[tab.as_result])
        asked = {"role": "observation" if as_result else "user", "content": text}
        picture = values[tab.picture]
        conversations, pictures = _conversations([h for _, _, h in columns], asked, picture)
        options = _options(page, values[tab.tools], values[tab.thinking])
        if any(pictures):
            options["pictures"] = pictures
        stop.clear()
        starts = []
        for history in (h for _, _, h in columns):
            if picture:
                history.append(chat_pictures.message(picture))
            history.append(tool_cards.question(text, as_result, lang, len(history)))
            starts.append(len(history))
            history.append({"role": "assistant", "content": ""})
        answers = page.studio.stream(conversations, [n for _, n, _ in columns], generation, stop, **options)
        with contextlib.closing(answers):  # now, not when collected: a page gone mid-answer ends the generation
            for update in answers:  # four a second, each redrawing both panes, rather than one per token
                speeds, answered = _show(columns, starts, update, lang), True
                yield base_history, adapter_history, speeds.get("base", ""), speeds.get("adapter", ""), "", *_SAME
    except Exception as error:
        # refused before it was answered (bad tools, no model): the panes as they were, the message kept to retry
        panes = (base_history, adapter_history) if answered else before
        yield *panes, gr.skip(), gr.skip(), text, *said(failure(error), lang)


_SAME = (gr.skip(), gr.skip())  # the status line and its memory, while an answer streams


def _conversations(histories: list[list], asked: dict, picture: str | None) -> tuple[list[list[dict]], list[list]]:
    """Each pane's conversation with the new question, and its pictures (earlier ones, then the new one)."""
    conversations, pictures = [], []
    for history in histories:
        kept, shown = chat_pictures.split(history)
        conversation = tool_cards.conversation(kept) + [asked]
        if picture:
            conversation = chat_pictures.with_new_picture(conversation)
            shown = [*shown, picture]
        conversations.append(conversation)
        pictures.append(shown)
    return conversations, pictures


def _options(page: Page, tools: str | None, thinking: bool | None) -> dict:
    """The tools box and the thinking switch as the engine takes them; the switch only for a template that thinks
    (otherwise it is greyed out and its value says nothing)."""
    options: dict = {"tools": tools} if tools and tools.strip() else {}
    if page.studio.engine.loaded and page.studio.engine.template().reasoning:
        options["thinking"] = bool(thinking)
    return options


def _show(columns: list, starts: list[int], answers: list, lang: str) -> dict[str, str]:
    """Each answer into its pane, from where it starts (thought, text, call cards); each pane's speed line."""
    speeds = {}
    for (kind, _, history), start, answer in zip(columns, starts, answers):
        history[start:] = tool_cards.answer_messages(answer, lang, start)
        speeds[kind] = T.answer_speed(lang, tokens=answer.tokens, rate=answer.tokens_per_second)
    return speeds


def _thinking_switch(page: Page, lang: str) -> tuple[dict, dict[str, str]]:
    """The thinking switch as the loaded template has it (on by the template's own setting), and why, in every
    language."""
    engine = page.studio.engine
    if not engine.loaded:
        shown, every = said(T.chat_thinking_no_model, lang)
        return gr.update(interactive=False, value=False, info=shown), every
    template = engine.template()
    name = say("data.own_template") if template.name == "own" else template.name
    why = T.chat_thinking_available if template.reasoning else T.chat_thinking_unavailable
    shown, every = said(why.filled(template=name), lang)
    return gr.update(interactive=template.reasoning, value=template.thinking, info=shown), every
