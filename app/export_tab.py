"""The Export tab: merge an adapter into a model folder or one GGUF file, show the reload check, upload to the Hub."""

from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr

from app import adapter_mix, adapter_picker
from app.background import run_with_updates
from app.feedback import problem
from app.i18n import T, named
from app.page import Page
from studio.errors import StudioError
from studio.locales import in_language

UPLOADS = [(T.hub_adapter, "adapter"), (T.hub_export, "export")]


@dataclass
class ExportTab:
    picker: adapter_picker.AdapterPicker
    mix: adapter_mix.AdapterMix  # a weighted combination merged instead of the picked adapter
    start: gr.Button
    result: gr.HTML
    upload_what: gr.Radio
    repo: gr.Textbox
    token: gr.Textbox
    private: gr.Checkbox
    push: gr.Button
    pushed: gr.Markdown


def layout(page: Page) -> ExportTab:
    labels = page.labels
    labels.add(gr.Markdown(T.export_note("en")), T.export_note, "value")
    picker = adapter_picker.layout(labels, "qs-export-adapter")
    mix = adapter_mix.layout(labels, "qs-export", T.mix_export_note, chat=False)
    with gr.Row():
        page.form.add("export.output_dir", scale=3)
        page.form.add("export.format", scale=1)
        page.form.add("export.gguf_type", scale=1)
    with gr.Row():
        page.form.add("export.max_shard_size", scale=1)
        page.form.add("export.dtype", scale=1)
        page.form.add("export.check_prompts", scale=1)
    start = labels.add(gr.Button(T.export("en"), variant="primary", elem_id="qs-export-start"), T.export, "value")
    result = gr.HTML(elem_id="qs-export-result")
    with labels.add(gr.Accordion(T.hub_title("en"), open=False, elem_id="qs-hub"), T.hub_title):
        with gr.Row():
            what = labels.add_choices(
                gr.Radio([(t("en"), v) for t, v in UPLOADS], value="adapter", label=T.hub_what("en"), scale=1), UPLOADS
            )
            labels.add(what, T.hub_what)
            repo = labels.add(gr.Textbox(label=T.hub_repo("en"), scale=2, elem_id="qs-hub-repo"), T.hub_repo)
            private = labels.add(gr.Checkbox(True, label=T.hub_private("en"), scale=1), T.hub_private)
        # a password box: the browser hides it, and it is passed to this one upload and nowhere else
        token = labels.add(gr.Textbox(label=T.hub_token("en"), type="password", elem_id="qs-hub-token"), T.hub_token)
        push = labels.add(gr.Button(T.hub_push("en"), elem_id="qs-hub-push"), T.hub_push, "value")
        pushed = gr.Markdown(elem_id="qs-hub-result")
    return ExportTab(picker, mix, start, result, what, repo, token, private, push, pushed)


def wire(page: Page, tab: ExportTab) -> None:
    adapter_picker.wire(page.studio, tab.picker, page.lang, combinations=True)
    adapter_mix.wire_export(page, tab.mix)
    recipe = [tab.mix.adapters, tab.mix.weights, tab.mix.kind, tab.mix.density]

    def run(values):
        lang = values[page.lang]
        try:
            config = page.form.read(values)
            combination = adapter_mix.export_combination(page, *(values[c] for c in recipe))
        except Exception as error:
            yield _box("failed", problem(error, lang, markdown=False), lang)
            return
        lines: list[tuple[bool, str]] = []  # (is per-tensor progress, text)
        adapter = values[tab.picker.dropdown]
        work = lambda report: page.studio.export(config, adapter, progress=report, combination=combination)  # noqa: E731
        for kind, value in run_with_updates(work):
            if kind == "progress":
                _add_line(lines, value, lang)
                yield _box("running", _text(lines), lang)
            elif kind == "error":
                yield _box("failed", _text(lines, [problem(value, lang, markdown=False)]), lang)
            else:
                yield _box("finished", _text(lines, _summary(value, lang)), lang)

    inputs = {page.lang, tab.picker.dropdown, *recipe} | page.form.inputs
    tab.start.click(run, inputs, tab.result, api_name="export")
    inputs = {page.lang, tab.picker.dropdown, tab.upload_what, tab.repo, tab.token, tab.private} | page.form.inputs
    tab.push.click(lambda values: _push(page, tab, values), inputs, tab.pushed, api_name="push_to_hub")


def _add_line(lines: list[tuple[bool, str]], message, lang: str) -> None:
    """A message is a new line; per-tensor progress (it has `done`) replaces the progress line before it."""
    tensor = hasattr(message, "done")
    if tensor and lines and lines[-1][0]:
        lines[-1] = (True, in_language(message, lang))
    else:
        lines.append((tensor, in_language(message, lang)))


def _text(lines: list[tuple[bool, str]], more: list[str] = ()) -> str:
    return "\n".join([text for _, text in lines] + list(more))


def _push(page: Page, tab: ExportTab, values) -> str:
    lang = values[page.lang]
    reason = page.studio.hub_unreachable()
    if reason is not None:  # offline: say why before reading or sending anything
        return f"**{T.error(lang)}:** {in_language(reason, lang)}"
    try:
        folder = (
            values[tab.picker.dropdown]
            if values[tab.upload_what] == "adapter"
            else page.form.read(values).export.output_dir
        )
        report = page.studio.push_to_hub(folder, values[tab.repo], values[tab.token] or None, values[tab.private])
    except StudioError as error:
        return problem(error, lang)
    return T.hub_done(lang, count=len(report.files), url=report.url)


def _summary(report, lang: str) -> list[str]:
    if hasattr(report, "gguf_file"):
        return [
            T.export_gguf_done(
                lang,
                file=report.out_dir / report.gguf_file,
                type=report.gguf_type,
                size=report.size_bytes / 2**20,
                seconds=report.seconds,
            ),
            T.export_gguf_check(
                lang,
                diff=report.max_logit_diff,
                type=report.gguf_type,
                expected=report.expected_diff,
                agreement=report.agreement,
            ),
            T.export_gguf_exact(lang, type=report.gguf_type, check=report.check_diff, tolerance=report.tolerance),
            # the file in llama.cpp itself (answers prompt by prompt), or what installing llama-cpp-python adds
            *(in_language(line, lang) for line in report.llama_cpp_lines),
            f"{T.export_files(lang)}: " + ", ".join(report.files),
        ]
    return [
        T.export_done(lang, path=report.out_dir, dtype=report.dtype, seconds=report.seconds),
        T.export_check(lang, diff=report.max_logit_diff, tolerance=report.tolerance),
        f"{T.export_files(lang)}: " + ", ".join(report.files),
    ]


def _box(state: str, text: str, lang: str) -> str:
    shown = T.export_running(lang) if state == "running" else named("state", state, lang)  # an export, not training
    return (
        f"<div class='qs-progress'><span class='qs-state qs-{state}'>{shown}</span>"
        f"<pre style='white-space:pre-wrap;margin-top:.5rem'>{html.escape(text)}</pre></div>"
    )
