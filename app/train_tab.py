"""The Train tab: data and preview, hyper-parameters, start / abort / resume, and the live run monitor."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from app import dataset_upload, fit_line, preview_view, run_monitor, sweep_panel
from app.background import run_with_updates
from app.charts import token_histogram
from app.feedback import failure, problem, said
from app.form import ConfigForm
from app.i18n import Labels, T
from app.page import Page
from studio.api import DeviceBusy, devices_value
from studio.config import TRACKER_NAMES
from studio.errors import StudioError
from studio.locales import in_language

COMMON = [
    "finetuning.method",
    "training.learning_rate",
    "training.num_epochs",
    "training.max_steps",
    "training.batch_size",
    "training.gradient_accumulation_steps",
    "training.lr_scheduler",
    "data.cutoff_len",
    "data.val_size",
    "lora.rank",
]
SECTIONS = [
    ("model", T.section_model),
    ("finetuning", T.section_finetuning),
    ("lora", T.section_lora),
    ("quantization", T.section_quantization),
    ("data", T.section_data),
    ("training", T.section_training),
    ("optimizer", T.section_optimizer),
    ("preference", T.section_preference),
    ("ppo", T.section_ppo),
    ("grpo", T.section_grpo),
    ("rewards", T.section_rewards),
    ("distributed", T.section_distributed),
    ("logging", T.section_logging),
]
# fields shown elsewhere on the page, and the runs folder, which the server decides (--runs-dir)
ELSEWHERE = {
    "model.name_or_path",
    "model.chat_template",
    "quantization.method",
    "data.dataset_dir",
    "data.datasets",
    "name",
    "training.output_dir",
    "training.stage",
    "training.devices",
}
# the evaluation settings a training run uses: the prompts it answers at each evaluation
WATCH = ["evaluation.watch_count", "evaluation.watch_prompts", "evaluation.watch_max_new_tokens"]
# fields whose value is usually one of the workspace's things: a list to pick from (typing still works),
# filled when the page loads and whenever runs start or end
CHOICES: dict[str, dict[str, list[str]]] = {"lora.init_adapter": {"choices": []}, "ppo.reward_model": {"choices": []}}
CHOICES["logging.report_to"] = {"choices": list(TRACKER_NAMES)}  # fixed names: a list that shows them all
LATEST = "latest"
PER_ROW = 4


@dataclass
class TrainTab:
    dataset_dir: gr.Textbox
    datasets: gr.Dropdown
    upload: dataset_upload.DatasetUpload
    preview_button: gr.Button
    command_button: gr.Button
    preview: preview_view.PreviewBox
    command: gr.Column
    cli: gr.Code
    yaml: gr.Code
    config_path: gr.Textbox
    save: gr.Button
    load: gr.Button
    config_status: gr.Markdown
    message: gr.Markdown
    devices: gr.CheckboxGroup
    devices_field: gr.Textbox
    start: gr.Button
    queue: gr.Button
    abort: gr.Button
    resume: gr.Button
    checkpoint: gr.Dropdown
    monitor: run_monitor.Monitor
    sweep: sweep_panel.SweepPanel  # a few fields' values, one queued run each
    fit: fit_line.FitLine  # will it fit, how long


def layout(page: Page) -> TrainTab:
    form, labels = page.form, page.labels
    with gr.Row():
        form.add("training.stage", scale=1)
        dataset_dir = form.add("data.dataset_dir", scale=1)
        datasets = form.add("data.datasets", choices=page.studio.dataset_names(form.defaults.data.dataset_dir), scale=3)
        form.add("name", scale=1)
    upload = dataset_upload.layout(labels, page.studio.upload_limit_mib)
    with gr.Row():
        preview_button = labels.add(gr.Button(T.preview_dataset("en"), size="sm"), T.preview_dataset, "value")
        command_button = labels.add(gr.Button(T.preview_command("en"), size="sm"), T.preview_command, "value")
    preview = preview_view.layout()
    with gr.Column(visible=False) as command:
        cli = gr.Code(language="shell", label="CLI", interactive=False, wrap_lines=True, elem_id="qs-cli")
        yaml = gr.Code(language="yaml", label="YAML", interactive=False, max_lines=20)
        with gr.Row():
            config_path = labels.add(
                gr.Textbox(value="configs/my_run.yaml", label=T.config_path("en"), scale=3, elem_id="qs-config-path"),
                T.config_path,
            )
            save = labels.add(gr.Button(T.save_config("en"), size="sm", scale=1), T.save_config, "value")
            load = labels.add(gr.Button(T.load_config("en"), size="sm", scale=1), T.load_config, "value")
        config_status = gr.Markdown()
    _parameters(form, labels)
    with gr.Row(equal_height=True):
        devices = labels.add(
            gr.CheckboxGroup(
                [(d.label, d.value) for d in page.studio.devices()],
                label=T.devices("en"),
                info=T.devices_info("en"),
                scale=3,
                elem_id="qs-devices",
            ),
            T.devices,
        )
        labels.add(devices, T.devices_info, "info")
        devices_field = form.add("training.devices", scale=1)
    fit = fit_line.layout(labels)  # will it fit, how long: right above Start
    message = gr.Markdown(elem_classes="qs-message")
    with gr.Row(equal_height=True):
        start = labels.add(gr.Button(T.start("en"), variant="primary", elem_id="qs-start"), T.start, "value")
        queue = labels.add(gr.Button(T.queue("en"), visible=False, elem_id="qs-queue"), T.queue, "value")
        abort = labels.add(gr.Button(T.abort("en"), variant="stop", elem_id="qs-abort"), T.abort, "value")
        resume = labels.add(gr.Button(T.resume("en"), elem_id="qs-resume"), T.resume, "value")
        checkpoint = labels.add(
            gr.Dropdown(
                [(T.latest_checkpoint("en"), LATEST)], value=LATEST, label=T.checkpoint("en"), elem_id="qs-checkpoint"
            ),
            T.checkpoint,
        )
    sweep = sweep_panel.layout(page)
    monitor = run_monitor.layout(labels)
    return TrainTab(
        dataset_dir,
        datasets,
        upload,
        preview_button,
        command_button,
        preview,
        command,
        cli,
        yaml,
        config_path,
        save,
        load,
        config_status,
        message,
        devices,
        devices_field,
        start,
        queue,
        abort,
        resume,
        checkpoint,
        monitor,
        sweep,
        fit,
    )


def _parameters(form: ConfigForm, labels: Labels) -> None:
    with labels.add(gr.Accordion(T.common("en"), open=True), T.common):
        with gr.Row():
            for path in COMMON:
                form.add(path, min_width=150)
    for section, title in SECTIONS:
        paths = [f"{section}.{name}" for name in type(getattr(form.defaults, section)).model_fields]
        paths = [p for p in paths if p not in ELSEWHERE and p not in COMMON]
        with labels.add(gr.Accordion(title("en"), open=False), title):
            for start in range(0, len(paths), PER_ROW):  # rows of equal width: long help texts stay readable
                with gr.Row(equal_height=True):
                    for path in paths[start : start + PER_ROW]:
                        form.add(path, min_width=200, **CHOICES.get(path, {}))
                    for _ in range(PER_ROW - len(paths[start : start + PER_ROW])):
                        gr.HTML(min_height=0)  # keeps the last row's fields as wide as the others
    with labels.add(gr.Accordion(T.section_watch("en"), open=False), T.section_watch):  # evaluation.* used by training
        with gr.Row(equal_height=True):
            for path in WATCH:
                form.add(path, min_width=200)


def wire(page: Page, tab: TrainTab) -> None:
    studio, form, lang = page.studio, page.form, page.lang
    preview = lambda values: (yield from _preview(page, values))  # noqa: E731
    tab.preview_button.click(preview, {lang} | form.inputs, tab.preview.outputs, api_name="preview")
    registered = dataset_upload.wire(page, tab.upload, tab.dataset_dir, tab.datasets)
    registered.success(
        preview, {lang} | form.inputs, tab.preview.outputs, api_visibility="private"
    )  # the new dataset, at once
    tab.dataset_dir.change(
        lambda d: gr.update(choices=studio.dataset_names(d)), tab.dataset_dir, tab.datasets, api_visibility="private"
    )
    tab.command_button.click(
        lambda v: _command(page, v), {lang} | form.inputs, [tab.command, tab.yaml, tab.cli], api_name="command"
    )
    tab.save.click(
        lambda v: _save(page, v[tab.config_path], v),
        {lang, tab.config_path} | form.inputs,
        tab.config_status,
        api_name="save_config",
    )
    tab.load.click(
        lambda path, lng: _load(page, path, lng, tab.config_status),
        [tab.config_path, lang],
        [tab.config_status, *form.outputs],
        api_name="load_config",
    )
    _wire_run_controls(page, tab)
    fit_line.wire(page, tab.fit)
    run_monitor.wire(studio, tab.monitor, lang)
    sweep_panel.wire(page, tab.sweep, tab.monitor.runs)
    tab.monitor.runs.change(
        lambda run, lng: _checkpoint_choices(page, run, lng),
        [tab.monitor.runs, lang],
        tab.checkpoint,
        api_visibility="private",
    )
    lang.change(  # "newest that loads" in the page's language; the chosen checkpoint stays chosen
        lambda run, lng, chosen: _checkpoint_choices(page, run, lng, chosen),
        [tab.monitor.runs, lang, tab.checkpoint],
        tab.checkpoint,
        api_visibility="private",
    )


def _wire_run_controls(page: Page, tab: TrainTab) -> None:
    studio, form, lang, monitor = page.studio, page.form, page.lang, tab.monitor

    def on_start(values, queue: bool = False):
        """Start (or queue) the run; a Start on busy devices offers the Queue button."""
        try:
            run_id = studio.start(form.read(values), queue=queue)
        except DeviceBusy as error:
            say = lambda lng, busy=error: f"{problem(busy, lng)}\n\n{T.queue_offer(lng)}"  # noqa: E731
            return (*said(say, values[lang]), gr.update(), gr.update(visible=True))
        except Exception as error:
            return (*said(failure(error), values[lang]), gr.update(), gr.update(visible=False))
        started = T.queued_run if studio.status(run_id).state == "queued" else T.started_run
        runs = gr.update(choices=run_monitor.run_choices(studio), value=run_id)
        return (*said(lambda lng: f"{started(lng)} `{run_id}`", values[lang]), runs, gr.update(visible=False))

    last = gr.State(None)  # the last message in both languages, for a language switch
    outputs = [tab.message, last, monitor.runs, tab.queue]
    tab.start.click(on_start, {lang} | form.inputs, outputs, api_name="start")
    tab.queue.click(lambda values: on_start(values, queue=True), {lang} | form.inputs, outputs, api_name="queue")
    tab.devices.input(devices_value, tab.devices, tab.devices_field, api_visibility="private")
    tab.abort.click(
        lambda run, lng: said(_abort(page, run), lng), [monitor.runs, lang], [tab.message, last], api_name="abort"
    )
    tab.resume.click(
        lambda run, ckpt, lng: said(_resume(page, run, ckpt), lng),
        [monitor.runs, tab.checkpoint, lang],
        [tab.message, last],
        api_name="resume",
    )
    lang.change(lambda both, lng: both[lng] if both else gr.skip(), [last, lang], tab.message, api_visibility="private")


def _preview(page: Page, values):
    """The preview, streamed: what it is doing while it works, then the rows, counts and token lengths."""
    lang = values[page.lang]
    try:
        config = page.form.read(values)
    except Exception as error:
        yield gr.update(visible=True), problem(error, lang), None, None, gr.update(visible=False)
        return
    clock = preview_view.Clock()
    work = lambda report: page.studio.preview(config, progress=report)  # noqa: E731
    for kind, value in run_with_updates(work, tick_s=1.0):
        if kind in ("progress", "tick"):
            yield gr.update(visible=True), clock.show(value, lang), gr.skip(), gr.skip(), gr.skip()
        elif kind == "error":
            yield gr.update(visible=True), problem(value, lang), None, None, gr.update(visible=False)
        else:
            result, note = value
            lengths = preview_view.all_lengths(result)
            figure = token_histogram(lengths, config.data.cutoff_len, lang) if lengths else None
            yield (
                gr.update(visible=True),
                preview_view.summary(result, note, lang),
                preview_view.table_update(result),
                gr.update(value=figure, visible=figure is not None),
                preview_view.pictures_update(result),
            )


def redraw(page: Page, tab: TrainTab):
    """(function, inputs, outputs) that redraw the monitor, e.g. after a language switch."""
    monitor = tab.monitor
    return (
        lambda run, lng: run_monitor.poll(page.studio, run, lng),
        [monitor.runs, page.lang],
        [monitor.progress, monitor.version, monitor.catalog],
    )


def _command(page: Page, values):
    try:
        config = page.form.read(values)
    except Exception as error:
        return gr.update(visible=True), problem(error, values[page.lang]), ""
    command = config.to_command()
    try:
        command += f"\n\n# {page.studio.memory_estimate(config).text(values[page.lang])}"
    except StudioError as error:  # e.g. devices this machine lacks: said with the command, not instead of it
        command += f"\n\n# {in_language(error, values[page.lang])}"
    if config.distributed.nnodes > 1:  # the other machines' share of the run, to be started there
        try:
            others = page.studio.other_node_commands(config)
        except Exception as error:
            return gr.update(visible=True), problem(error, values[page.lang]), command
        command += f"\n\n# {T.other_nodes(values[page.lang])}\n" + "\n".join(others)
    return gr.update(visible=True), config.to_yaml(), command


def _save(page: Page, path: str, values) -> str:
    lang = values[page.lang]
    try:
        return f"{T.saved(lang)}: `{page.studio.save_config(page.form.read(values), path)}`"
    except Exception as error:
        return problem(error, lang)


def _load(page: Page, path: str, lang: str, status: gr.Markdown) -> dict:
    try:
        config = page.studio.load_config(path)
    except Exception as error:
        return {status: problem(error, lang)}
    return {status: f"{T.loaded(lang)}: `{path}`", **page.form.values_of(config)}


def _abort(page: Page, run_id: str | None):
    """What to say (a function of the language) once the run is asked to stop."""
    if not run_id:
        return T.no_run
    try:
        outcome = page.studio.abort(run_id)
    except Exception as error:
        return failure(error)
    return {"stopping": T.abort_sent, "cancelled": T.abort_cancelled, "ended": T.abort_ended}[outcome]


def _resume(page: Page, run_id: str | None, checkpoint):
    if not run_id:
        return T.no_run
    try:
        plan = page.studio.resume(run_id, None if checkpoint in (None, "", LATEST) else int(checkpoint))
    except Exception as error:
        return failure(error)

    def resumed(lang: str) -> str:
        notes = "".join(f"\n- {in_language(note, lang)}" for note in plan.skipped)
        return f"{T.resumed_run(lang)} `{run_id}` ← checkpoint-{plan.step}{notes}"

    return resumed


def _checkpoint_choices(page: Page, run_id: str | None, lang: str, chosen: str = LATEST):
    steps = []
    if run_id:
        try:
            steps = page.studio.checkpoints(run_id)
        except (StudioError, OSError):  # an unreadable run has no checkpoints to offer; the monitor says why
            steps = []
    choices = [(T.latest_checkpoint(lang), LATEST)] + [(f"checkpoint-{step}", str(step)) for step in steps]
    return gr.update(choices=choices, value=chosen if chosen in {value for _, value in choices} else LATEST)
