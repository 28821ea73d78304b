"""The Chat tab's switch for the OpenAI-compatible API served beside the page at /v1 (studio.openai_api).

The endpoint is the server's, not the page's: one switch state for every open page, shown as it is whenever a page
loads. It answers with the Chat tab's own engine, so what it offers follows what is loaded there: the line under
the switch is redrawn whenever the Chat tab's status line changes (a model or an adapter loaded or unloaded).
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from app.feedback import problem
from app.i18n import T
from app.page import Page
from studio.errors import StudioError


@dataclass
class ApiSwitch:
    on: gr.Checkbox
    info: gr.Markdown


def layout(page: Page) -> ApiSwitch:
    with page.labels.add(gr.Accordion(T.api_title("en"), open=False, elem_id="qs-chat-api-box"), T.api_title):
        on = page.labels.add(gr.Checkbox(value=False, label=T.api_switch("en"), elem_id="qs-chat-api"), T.api_switch)
        info = gr.Markdown(T.api_off("en"), elem_id="qs-chat-api-info")
    return ApiSwitch(on, info)


def wire(page: Page, switch: ApiSwitch, chat_status: gr.Markdown, demo: gr.Blocks) -> None:
    endpoint = page.studio.openai_endpoint

    def flip(on: bool, lang: str, request: gr.Request):
        try:
            endpoint.switch(on)
        except StudioError as error:  # beyond loopback without a key: it stays off and says how to give one
            return gr.update(value=False), problem(error, lang)
        return gr.update(), describe(page, lang, request)

    def redraw(lang: str, request: gr.Request):
        return describe(page, lang, request)

    def shown(lang: str, request: gr.Request):
        return gr.update(value=endpoint.enabled), describe(page, lang, request)

    # .input, not .change: a value set by the page itself (a refusal above, a page load) is no flip
    switch.on.input(flip, [switch.on, page.lang], [switch.on, switch.info], api_visibility="private", queue=False)
    for event in (chat_status.change, page.lang.change):
        event(redraw, page.lang, switch.info, api_visibility="private", queue=False)
    demo.load(shown, page.lang, [switch.on, switch.info], api_visibility="private", queue=False)


def describe(page: Page, lang: str, request: gr.Request) -> str:
    """Where the API answers and to which model names, or that it is off."""
    endpoint = page.studio.openai_endpoint
    if not endpoint.enabled:
        return T.api_off(lang)
    url = f"{str(request.base_url).rstrip('/')}/v1"  # as this browser reaches the server
    names = list(endpoint.models())
    models = ", ".join(f"`{name}`" for name in names) or T.api_no_models(lang)
    key = T.api_key_needed(lang) if endpoint.access.keys else T.api_key_loopback(lang)
    text = T.api_on(lang, url=url, models=models, key=key)
    if names:  # a request to copy, to the adapter loaded last (the base when there is none)
        body = f'{{"model": "{names[-1]}", "messages": [{{"role": "user", "content": "Hi"}}]}}'
        auth = ' -H "Authorization: Bearer $QLORA_STUDIO_API_KEY"' if endpoint.access.keys else ""
        text += f"\n\n```\ncurl {url}/chat/completions -H 'Content-Type: application/json'{auth} -d '{body}'\n```"
    return text
