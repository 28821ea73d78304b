"""The studio page: a top bar shared by all tabs, then Train, Evaluate & Predict, Chat and Export."""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no outside connections

import gradio as gr  # noqa: E402

from app import chat_tab, eval_tab, export_tab, train_tab  # noqa: E402
from app.adapter_picker import adapter_choices  # noqa: E402
from studio.chat import ChatEngine  # noqa: E402
from app.form import ConfigForm  # noqa: E402
from app.i18n import LANGUAGES, Labels, T  # noqa: E402
from studio.config import RunConfig  # noqa: E402
from studio.config.model import MODEL_PRESETS  # noqa: E402
from studio.service import TrainingService  # noqa: E402

CSS = """
.qs-header h1 { margin: 0; font-size: 1.6rem; }
.qs-header p { margin: 0.2rem 0 0; color: var(--body-text-color-subdued); }
.qs-progress { padding: 0.8rem 1rem; border: 1px solid var(--border-color-primary); border-radius: 10px; }
.qs-progress.qs-empty { color: var(--body-text-color-subdued); }
.qs-head { display: flex; gap: 0.8rem; align-items: center; margin-bottom: 0.5rem; }
.qs-state { padding: 0.05rem 0.6rem; border-radius: 999px; font-size: 0.85rem; background: #e5e7eb; }
.qs-running, .qs-starting { background: #dbeafe; color: #1e40af; }
.qs-finished { background: #dcfce7; color: #166534; }
.qs-failed, .qs-missing { background: #fee2e2; color: #991b1b; }
.qs-aborted { background: #fef3c7; color: #92400e; }
.qs-phase { color: var(--body-text-color-subdued); font-size: 0.85rem; }
.qs-bar { height: 12px; background: #e5e7eb; border-radius: 6px; overflow: hidden; }
.qs-fill { height: 100%; background: linear-gradient(90deg, #6366f1, #22c55e); transition: width 0.6s; }
.qs-details, .qs-method { margin-top: 0.4rem; font-size: 0.9rem; }
.qs-method { color: var(--body-text-color-subdued); }
.qs-error { margin-top: 0.4rem; color: #b91c1c; white-space: pre-wrap; }
"""



def build_app(service: TrainingService, defaults: RunConfig | None = None) -> gr.Blocks:
    form, labels = ConfigForm(defaults), Labels()
    engine = ChatEngine()  # one model in memory, shared by Chat and Evaluate
    with gr.Blocks(title="QLoRA Studio") as demo:
        lang_state = gr.State("en")
        header = gr.Markdown(_header("en"), elem_classes="qs-header")
        with gr.Row(equal_height=True):
            language = gr.Radio(list(LANGUAGES), value="English", label=T.language("en"), scale=1, elem_id="qs-language")
            labels.add(language, T.language)
            form.add("model", "name_or_path", choices=MODEL_PRESETS, scale=3, elem_id="qs-model")
            form.add("quantization", "method", scale=1, elem_id="qs-method")
            form.add("model", "chat_template", scale=1)
        with gr.Tabs():
            with labels.add(gr.Tab(T.tab_train("en"), elem_id="qs-tab-train"), T.tab_train):
                train = train_tab.build(service, form, labels, lang_state)
            with labels.add(gr.Tab(T.tab_eval("en"), elem_id="qs-tab-eval"), T.tab_eval):
                eval_adapter = eval_tab.build(service, engine, form, labels)
            with labels.add(gr.Tab(T.tab_chat("en"), elem_id="qs-tab-chat"), T.tab_chat):
                chat = chat_tab.build(service, engine, form, labels)
            with labels.add(gr.Tab(T.tab_export("en"), elem_id="qs-tab-export"), T.tab_export):
                export_adapter = export_tab.build(service, form, labels)

        def switch(choice):
            lang = LANGUAGES[choice]
            return [lang, _header(lang), *labels.updates(lang), *form.relabel(lang)]

        language.change(switch, language, [lang_state, header, *labels.components, *form.components]).then(
            train.redraw, train.inputs, train.outputs, show_progress="hidden"
        )

        def on_load():
            from app.train_actions import default_run, run_choices

            adapters = adapter_choices(service)
            return gr.update(choices=run_choices(service), value=default_run(service)), adapters, adapters, adapters

        demo.load(on_load, None, [train.run_selector, chat.adapter, eval_adapter, export_adapter])
    return demo


def _header(lang: str) -> str:
    return f"# {T.title(lang)}\n{T.subtitle(lang)}"


def serve(
    host: str = "127.0.0.1", port: int = 7860, auth: tuple[str, str] | None = None,
    runs_dir: str = "runs", defaults: RunConfig | None = None,
) -> None:
    demo = build_app(TrainingService(runs_dir), defaults)
    demo.queue(default_concurrency_limit=8).launch(
        server_name=host, server_port=port, auth=auth, share=False, ssr_mode=False,
        css=CSS, theme=gr.themes.Soft(), footer_links=[], show_error=True,
    )
