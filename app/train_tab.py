"""The Train tab: data and preview, hyper-parameters, start/abort, live progress and charts."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from app import train_actions as actions
from app.charts import loss_figure, lr_figure, memory_figure, token_histogram
from app.form import ConfigForm
from app.i18n import Labels, T
from studio.service import TrainingService

COMMON = [
    ("training", "learning_rate"), ("training", "num_epochs"), ("training", "max_steps"),
    ("training", "batch_size"), ("training", "gradient_accumulation_steps"), ("training", "lr_scheduler"),
    ("data", "cutoff_len"), ("data", "val_size"), ("lora", "rank"),
]
SECTIONS = [("lora", T.section_lora), ("quantization", T.section_quantization), ("data", T.section_data), ("training", T.section_training)]
TOPBAR_OR_OTHER = {("model", "name_or_path"), ("model", "chat_template"), ("quantization", "method"),
                   ("data", "dataset_dir"), ("data", "datasets"), ("name",)}


@dataclass
class TrainTab:
    run_selector: gr.Dropdown
    redraw: object  # (run_id, history, lang) -> values for `outputs`, charts always redrawn
    inputs: list
    outputs: list


def build(service: TrainingService, form: ConfigForm, labels: Labels, lang_state: gr.State) -> TrainTab:
    with gr.Row():
        dataset_dir = form.add("data", "dataset_dir", scale=1)
        datasets = form.add("data", "datasets", choices=actions.dataset_choices(form.defaults.data.dataset_dir), scale=3)
        form.add("name", scale=1)
    with gr.Row():
        preview_button = labels.add(gr.Button(T.preview_dataset("en"), size="sm"), T.preview_dataset, "value")
        command_button = labels.add(gr.Button(T.preview_command("en"), size="sm"), T.preview_command, "value")
    preview_box = _build_preview_box()
    command_box = _build_command_box(form, labels)
    _build_parameters(form, labels)
    message = gr.Markdown(elem_classes="qs-message")
    with gr.Row():
        start = labels.add(gr.Button(T.start("en"), variant="primary", elem_id="qs-start"), T.start, "value")
        abort = labels.add(gr.Button(T.abort("en"), variant="stop", elem_id="qs-abort"), T.abort, "value")
        resume = labels.add(gr.Button(T.resume("en"), elem_id="qs-resume"), T.resume, "value")
    monitor = _build_monitor(labels)
    history = gr.State(None)

    def on_preview(lang, *values):
        try:
            result, note = actions.preview(form.read(*values))
        except actions.USER_ERRORS as error:
            return gr.update(visible=True), f"**{T.error(lang)}:** {error}", None, None
        figure = token_histogram(actions.all_lengths(result), form.read(*values).data.cutoff_len, lang) if actions.all_lengths(result) else None
        return gr.update(visible=True), actions.preview_summary(result, note, lang), actions.preview_table(result), figure

    preview_button.click(on_preview, [lang_state, *form.components], [preview_box.column, preview_box.summary, preview_box.table, preview_box.histogram])
    command_button.click(lambda *v: _command(form, *v), form.components, [command_box.column, command_box.yaml, command_box.command])
    dataset_dir.change(lambda d: gr.update(choices=actions.dataset_choices(d)), dataset_dir, datasets)

    def on_start(lang, *values):
        try:
            run_id = service.start(form.read(*values))
        except actions.USER_ERRORS as error:
            return f"**{T.error(lang)}:** {error}", gr.update(), None
        return f"{T.started_run(lang)} `{run_id}`", gr.update(choices=actions.run_choices(service), value=run_id), None

    start.click(on_start, [lang_state, *form.components], [message, monitor.runs, history])
    abort.click(lambda run, lang: _abort(service, run, lang), [monitor.runs, lang_state], message)
    resume.click(lambda run, lang: _resume(service, run, lang), [monitor.runs, lang_state], [message, history])
    monitor.refresh_runs.click(lambda run: gr.update(choices=actions.run_choices(service), value=run), monitor.runs, monitor.runs)

    outputs = [history, monitor.progress, monitor.loss, monitor.lr, monitor.memory, monitor.log]

    def refresh(run_id, state, lang, force=False):
        state, changed = actions.poll(service, run_id, state)
        progress = actions.progress_html(service, state, lang)
        if not (changed or force):
            return state, progress, gr.skip(), gr.skip(), gr.skip(), gr.skip()
        log = "\n".join(state.log[-40:]) if state else ""
        return state, progress, loss_figure(state, lang), lr_figure(state, lang), memory_figure(state, lang), log

    gr.Timer(1.0).tick(refresh, [monitor.runs, history, lang_state], outputs, show_progress="hidden")
    monitor.runs.change(lambda run, lang: refresh(run, None, lang, force=True), [monitor.runs, lang_state], outputs, show_progress="hidden")

    def redraw(run_id, state, lang):
        return refresh(run_id, state, lang, force=True)

    return TrainTab(monitor.runs, redraw, [monitor.runs, history, lang_state], outputs)


@dataclass
class _PreviewBox:
    column: gr.Column
    summary: gr.Markdown
    table: gr.Dataframe
    histogram: gr.Plot


def _build_preview_box() -> _PreviewBox:
    with gr.Column(visible=False, elem_id="qs-preview") as column:
        summary = gr.Markdown()
        with gr.Row():
            table = gr.Dataframe(wrap=True, max_height=320, scale=3, elem_id="qs-preview-table")
            histogram = gr.Plot(scale=2, show_label=False)
    return _PreviewBox(column, summary, table, histogram)


@dataclass
class _CommandBox:
    column: gr.Column
    yaml: gr.Code
    command: gr.Code


def _build_command_box(form: ConfigForm, labels: Labels) -> _CommandBox:
    with gr.Column(visible=False) as column:
        command = gr.Code(language="shell", label="CLI", interactive=False, wrap_lines=True)
        yaml = gr.Code(language="yaml", label="YAML", interactive=False, max_lines=20)
        with gr.Row():
            path = labels.add(gr.Textbox(value="configs/my_run.yaml", label=T.config_path("en"), scale=3), T.config_path)
            save = labels.add(gr.Button(T.save_config("en"), size="sm", scale=1), T.save_config, "value")
            load = labels.add(gr.Button(T.load_config("en"), size="sm", scale=1), T.load_config, "value")
        status = gr.Markdown()
    save.click(lambda p, *v: _save(form, p, *v), [path, *form.components], status)
    load.click(lambda p: _load(form, p), path, [status, *form.components])
    return _CommandBox(column, yaml, command)


def _build_parameters(form: ConfigForm, labels: Labels) -> None:
    with labels.add(gr.Accordion(T.common("en"), open=True), T.common):
        with gr.Row():
            for path in COMMON:
                form.add(*path, min_width=150)
    for section, title in SECTIONS:
        names = [n for n in type(getattr(form.defaults, section)).model_fields if (section, n) not in TOPBAR_OR_OTHER and (section, n) not in COMMON]
        with labels.add(gr.Accordion(title("en"), open=False), title):
            with gr.Row():
                for name in names:
                    form.add(section, name, min_width=180)


@dataclass
class _Monitor:
    runs: gr.Dropdown
    refresh_runs: gr.Button
    progress: gr.HTML
    loss: gr.Plot
    lr: gr.Plot
    memory: gr.Plot
    log: gr.Textbox


def _build_monitor(labels: Labels) -> _Monitor:
    with gr.Row():
        runs = labels.add(gr.Dropdown(choices=[], label=T.runs("en"), scale=4, elem_id="qs-runs"), T.runs)
        refresh_runs = labels.add(gr.Button(T.refresh("en"), size="sm", scale=1), T.refresh, "value")
    progress = gr.HTML(elem_id="qs-progress")
    with gr.Row():
        loss = gr.Plot(show_label=False, elem_id="qs-loss-chart")
        lr = gr.Plot(show_label=False, elem_id="qs-lr-chart")
        memory = gr.Plot(show_label=False, elem_id="qs-memory-chart")
    log = labels.add(gr.Textbox(label=T.logs("en"), lines=8, max_lines=8, interactive=False, autoscroll=True, elem_id="qs-log"), T.logs)
    return _Monitor(runs, refresh_runs, progress, loss, lr, memory, log)


def _command(form: ConfigForm, *values):
    try:
        config = form.read(*values)
    except actions.USER_ERRORS as error:
        return gr.update(visible=True), str(error), ""
    return gr.update(visible=True), config.to_yaml(), config.to_command()


def _save(form: ConfigForm, path: str, *values) -> str:
    try:
        return f"{T.saved('en')}: `{actions.save_config(form.read(*values), path)}`"
    except actions.USER_ERRORS as error:
        return f"**{T.error('en')}:** {error}"


def _load(form: ConfigForm, path: str):
    try:
        config = actions.load_config(path)
    except actions.USER_ERRORS as error:
        return [f"**{T.error('en')}:** {error}"] + [gr.skip()] * len(form.controls)
    return [f"{T.loaded('en')}: `{path}`"] + form.values_of(config)


def _abort(service: TrainingService, run_id: str | None, lang: str) -> str:
    if not run_id:
        return T.no_run(lang)
    try:
        service.abort(run_id)
    except actions.USER_ERRORS as error:
        return f"**{T.error(lang)}:** {error}"
    return T.abort_sent(lang)


def _resume(service: TrainingService, run_id: str | None, lang: str):
    if not run_id:
        return T.no_run(lang), gr.skip()
    try:
        service.resume(run_id)
    except actions.USER_ERRORS as error:
        return f"**{T.error(lang)}:** {error}", gr.skip()
    return f"{T.started_run(lang)} `{run_id}`", None
