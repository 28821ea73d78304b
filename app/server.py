"""The studio page: a top bar shared by all tabs, then Train, Evaluate & Predict, Chat, Export and Compare runs.

Layout first, wiring second: every tab lays out its components, the config form is sealed, and
only then are events wired, so each handler sees every field of the form by name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no outside connections
# Gradio otherwise re-summarises up to 10,000 past events with pandas after every event, for a
# monitoring page the studio does not serve: with many pages polling, most of the server's time.
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "1000000")
os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "200")

import gradio as gr  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402
from starlette.routing import Mount  # noqa: E402

from app import (  # noqa: E402
    adapter_picker,
    chat_tab,
    compare_tab,
    eval_tab,
    export_tab,
    openai_switch,
    recipe_fill,
    run_monitor,
    train_tab,
)
from app.form import ConfigForm  # noqa: E402
from app.i18n import LANGUAGES, Labels, T  # noqa: E402
from app.login_throttle import LoginThrottle  # noqa: E402
from app.page import Page  # noqa: E402
from studio.api import Studio  # noqa: E402
from studio.config import MODEL_PRESETS, RunConfig  # noqa: E402
from studio.locales import ENGLISH  # noqa: E402
from studio.locales import LANGUAGES as LANGUAGE_NAMES  # noqa: E402

ENGLISH_NAME = LANGUAGE_NAMES[ENGLISH]  # the page starts in English
CSS = """
.qs-header h1 { margin: 0; font-size: 1.6rem; }
.qs-header p { margin: 0.2rem 0 0; color: var(--body-text-color-subdued); }
.qs-progress { padding: 0.8rem 1rem; border: 1px solid var(--border-color-primary); border-radius: 10px; }
.qs-progress.qs-empty { color: var(--body-text-color-subdued); }
.qs-head { display: flex; gap: 0.8rem; align-items: center; margin-bottom: 0.5rem; }
.qs-state { padding: 0.05rem 0.6rem; border-radius: 999px; font-size: 0.85rem; background: #e5e7eb; }
.qs-running, .qs-starting { background: #dbeafe; color: #1e40af; }
.qs-finished { background: #dcfce7; color: #166534; }
.qs-failed, .qs-missing, .qs-unreadable { background: #fee2e2; color: #991b1b; }
.qs-aborted, .qs-cancelled { background: #fef3c7; color: #92400e; }
.qs-phase { color: var(--body-text-color-subdued); font-size: 0.85rem; }
.qs-bar { height: 12px; background: #e5e7eb; border-radius: 6px; overflow: hidden; }
.qs-fill { height: 100%; background: linear-gradient(90deg, #6366f1, #22c55e); transition: width 0.6s; }
.qs-details, .qs-method { margin-top: 0.4rem; font-size: 0.9rem; }
.qs-method { color: var(--body-text-color-subdued); }
.qs-error { margin-top: 0.4rem; color: #b91c1c; white-space: pre-wrap; }
/* the run's charts: two columns (each at least 480 px and 40% wide, so never three), one on a narrow screen */
.qs-charts { display: grid !important; grid-template-columns: repeat(auto-fit, minmax(max(480px, 40%), 1fr)); }
.qs-charts > #qs-loss-chart { grid-column: 1 / -1; }
/* the command box as tall as its text: Gradio sizes it from its first line's height, which wrapped (and measured
   while the box was still narrow) is most of the command, and left a few lines in ~600 px of empty space */
#qs-cli .cm-scroller { min-height: 0 !important; max-height: 24em !important; }
"""


@dataclass
class StudioPage:
    """The built page and its parts (scripts and tests find components here rather than by position)."""

    demo: gr.Blocks
    page: Page
    recipes: recipe_fill.RecipeFill
    train: train_tab.TrainTab
    evaluate: eval_tab.EvalTab
    chat: chat_tab.ChatTab
    export: export_tab.ExportTab
    compare: compare_tab.CompareTab
    api: openai_switch.ApiSwitch  # the Chat tab's switch for the OpenAI-compatible API


def build_app(studio: Studio, defaults: RunConfig | None = None) -> gr.Blocks:
    return build_page(studio, defaults).demo


def build_page(studio: Studio, defaults: RunConfig | None = None) -> StudioPage:
    with gr.Blocks(title="QLoRA Studio") as demo:
        page = Page(studio, ConfigForm(defaults), Labels(), gr.State("en"))
        header = gr.Markdown(_header("en"), elem_classes="qs-header")
        with gr.Row(equal_height=True):
            language = page.labels.add(
                gr.Radio(list(LANGUAGES), value=ENGLISH_NAME, label=T.language("en"), scale=1, elem_id="qs-language"),
                T.language,
            )
            page.form.add("model.name_or_path", choices=MODEL_PRESETS, scale=3)
            page.form.add("quantization.method", scale=1)
            page.form.add("model.chat_template", scale=1)
        recipes = recipe_fill.layout()
        with gr.Tabs() as tabs:  # tab ids let a handler switch tabs (Compare opens an adapter in Chat or Evaluate)
            with page.labels.add(
                gr.Tab(T.tab_train("en"), id="train", elem_id="qs-tab-train"), T.tab_train
            ) as train_page:
                train = train_tab.layout(page)
            with page.labels.add(gr.Tab(T.tab_eval("en"), id="eval", elem_id="qs-tab-eval"), T.tab_eval) as eval_page:
                evaluate = eval_tab.layout(page)
            with page.labels.add(gr.Tab(T.tab_chat("en"), id="chat", elem_id="qs-tab-chat"), T.tab_chat) as chat_page:
                chat = chat_tab.layout(page)
                api_switch = openai_switch.layout(page)
            with page.labels.add(
                gr.Tab(T.tab_export("en"), id="export", elem_id="qs-tab-export"), T.tab_export
            ) as export_page:
                export = export_tab.layout(page)
            compare_page = page.labels.add(
                gr.Tab(T.tab_compare("en"), id="compare", elem_id="qs-tab-compare"), T.tab_compare
            )
            with compare_page:
                compare = compare_tab.layout(page)
        page.form.seal()

        train_tab.wire(page, train)
        eval_tab.wire(page, evaluate)
        chat_tab.wire(page, chat)
        openai_switch.wire(page, api_switch, chat.status, demo)
        export_tab.wire(page, export)
        compare_tab.wire(page, compare, compare_tab.OpenTargets(tabs, chat.picker.dropdown, evaluate.picker.dropdown))
        compare_page.select(
            lambda ticked, lng: compare_tab.run_choices(studio, ticked, lng),
            [compare.runs, page.lang],
            compare.runs,
            api_visibility="private",
            queue=False,
        )
        # a log redrawn while its tab was hidden kept its old scroll position: shown again, it shows its end
        train_page.select(None, js=run_monitor.FOLLOW_LOG_END, api_visibility="private", queue=False)
        _wire_language(page, language, header, train)
        recipe_fill.wire(page, recipes)
        for tab, picker in ((eval_page, evaluate.picker), (chat_page, chat.picker), (export_page, export.picker)):
            # a tab's adapter list is read when the tab is opened: fresh there, and page loads stay cheap
            tab.select(  # Chat's and Export's list the combinations loaded in Chat too
                lambda lng, mixed=picker is not evaluate.picker: adapter_picker.choices(
                    studio, lng, combinations=mixed
                ),
                page.lang,
                picker.dropdown,
                api_visibility="private",
                queue=False,
            )
        init_adapter = page.form.controls["lora.init_adapter"].component
        reward_model = page.form.controls["ppo.reward_model"].component
        demo.load(lambda: _on_load(studio), None, train.monitor.runs, api_name="page_load", queue=False)
        demo.load(  # what the files hold now, not what they held when the server built the page
            lambda folder, lng: (
                gr.update(choices=studio.dataset_names(folder)),
                adapter_picker.choices(studio, lng, adapters_only=True),
                gr.update(choices=studio.reward_models()),
            ),
            [train.dataset_dir, page.lang],
            [train.datasets, init_adapter, reward_model],
            api_visibility="private",
            queue=False,
        )
        pickers = [evaluate.picker.dropdown, chat.picker.dropdown, export.picker.dropdown, init_adapter, reward_model]
        train.monitor.catalog.change(
            lambda run, lng: _refresh_lists(studio, run, lng),
            [train.monitor.runs, page.lang],
            [train.monitor.runs, *pickers],
            api_visibility="private",
            queue=False,
        )
    return StudioPage(demo, page, recipes, train, evaluate, chat, export, compare, api_switch)


def _wire_language(page: Page, language: gr.Radio, header: gr.Markdown, train: train_tab.TrainTab) -> None:
    labelled = page.labels.components + page.form.outputs

    def switch(choice):
        lang = LANGUAGES[choice]
        return {page.lang: lang, header: _header(lang), **page.labels.updates(lang), **page.form.relabel(lang)}

    redraw, inputs, outputs = train_tab.redraw(page, train)
    language.change(switch, language, [page.lang, header, *labelled], api_visibility="private").then(
        redraw, inputs, outputs, show_progress="hidden", api_visibility="private"
    )


def _refresh_lists(studio: Studio, run_id: str | None, lang: str) -> list:
    """Runs started, ended or gone: every list follows, the chosen run stays chosen.

    The value is sent only when the chosen run is gone: `run_id` is what the page held when the poll saw the
    change, and a Start answered meanwhile (which picks its new run) must not be undone by this late reply."""
    choices = run_monitor.run_choices(studio)
    runs = gr.update(choices=choices) if run_id in choices else gr.update(choices=choices, value=studio.default_run())
    adapters, init = adapter_picker.choices(studio, lang), adapter_picker.choices(studio, lang, adapters_only=True)
    mixed = adapter_picker.choices(studio, lang, combinations=True)  # Chat's and Export's
    return [runs, adapters, mixed, mixed, init, gr.update(choices=studio.reward_models())]


def _on_load(studio: Studio):
    statuses = studio.runs()
    return gr.update(choices=[s.run_id for s in statuses], value=studio.default_run(statuses))


def _header(lang: str) -> str:
    return f"# {T.title(lang)}\n{T.subtitle(lang)}"


# How often Gradio's queue looks for work when it has none: its defaults (1 ms, and 10 ms for progress while an
# event runs) cost an idle server 7% of a core, taken from the model's threads while Chat answers on a CPU
# (bench/chat_stream_speed.py). A queued event now waits at most 20 ms to start; progress is sent 10 times a second.
QUEUE_IDLE_S, PROGRESS_IDLE_S = 0.02, 0.1


def calm_queue(demo: gr.Blocks) -> None:
    """Gradio's queue polls less often when idle (private attributes: tests/app/test_serving.py checks they exist)."""
    queue = demo._queue
    queue.sleep_when_free = max(queue.sleep_when_free, QUEUE_IDLE_S)
    queue.progress_update_sleep_when_free = max(queue.progress_update_sleep_when_free, PROGRESS_IDLE_S)


def serve(
    studio: Studio,
    host: str,
    port: int,
    auth: list[tuple[str, str]] | None,
    defaults: RunConfig | None,
    trusted_proxies: str = "",
) -> None:
    """Serve the page. `trusted_proxies` (studio.serving.trusted_proxies) may set X-Forwarded-For; no one else."""
    # Gradio builds its uvicorn.Config without forwarded_allow_ips (gradio/http_server.py start_server), so
    # uvicorn reads this variable, whose absence would mean "believe 127.0.0.1": any local client could then
    # pick its address per request. Set here, not inherited, so only the flag decides.
    os.environ["FORWARDED_ALLOW_IPS"] = trusted_proxies
    demo = build_app(studio, defaults)
    # api_open=False: a queued event runs only through the queue and its concurrency limit, never as a direct
    # POST to /run/predict, where a script could run any number of them at once
    demo.queue(default_concurrency_limit=8, api_open=False)
    calm_queue(demo)
    demo.launch(
        server_name=host,
        server_port=port,
        auth=auth or None,
        share=False,
        ssr_mode=False,
        css=CSS,
        theme=gr.themes.Soft(),
        footer_links=[],
        show_error=True,
        quiet=True,
        # Gradio stores an upload in its temp folder before any handler sees it: the studio's limit applies there
        max_file_size=studio.upload_limit_mib * 2**20,
        # the run history would keep every public call's inputs in the browser, the Hub token box's included
        run_history=False,
        # the OpenAI-compatible API beside the page, on the Chat tab's engine (off until its switch; its own keys,
        # not the page's login: app/openai_switch.py); first among the routes, so no page route can shadow it
        app_kwargs={
            "middleware": [Middleware(LoginThrottle)],
            "routes": [Mount("/v1", app=studio.openai_endpoint.app)],
        },
    )
