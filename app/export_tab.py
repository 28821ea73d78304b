"""The Export tab: merge an adapter into a standard model folder and show the reload check."""

from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr

from app import adapter_picker
from app.background import run_with_updates
from app.feedback import problem
from app.i18n import T, named
from app.page import Page
from studio.text import in_language


@dataclass
class ExportTab:
    picker: adapter_picker.AdapterPicker
    start: gr.Button
    result: gr.HTML


def layout(page: Page) -> ExportTab:
    page.labels.add(gr.Markdown(T.export_note("en")), T.export_note, "value")
    picker = adapter_picker.layout(page.labels, "qs-export-adapter")
    with gr.Row():
        page.form.add("export.output_dir", scale=3)
        page.form.add("export.max_shard_size", scale=1)
        page.form.add("export.dtype", scale=1)
        page.form.add("export.check_prompts", scale=1)
    start = page.labels.add(gr.Button(T.export("en"), variant="primary", elem_id="qs-export-start"), T.export, "value")
    return ExportTab(picker, start, gr.HTML(elem_id="qs-export-result"))


def wire(page: Page, tab: ExportTab) -> None:
    adapter_picker.wire(page.studio, tab.picker, page.lang)

    def run(values):
        lang = values[page.lang]
        try:
            config = page.form.read(values)
        except Exception as error:
            yield _box("failed", problem(error, lang, markdown=False), lang)
            return
        lines: list[str] = []
        work = lambda report: page.studio.export(config, values[tab.picker.dropdown], progress=report)  # noqa: E731
        for kind, value in run_with_updates(work):
            if kind == "progress":
                lines.append(in_language(value, lang))
                yield _box("running", "\n".join(lines), lang)
            elif kind == "error":
                yield _box("failed", "\n".join(lines + [problem(value, lang, markdown=False)]), lang)
            else:
                yield _box("finished", "\n".join(lines + _summary(value, lang)), lang)

    tab.start.click(run, {page.lang, tab.picker.dropdown} | page.form.inputs, tab.result, api_name="export")


def _summary(report, lang: str) -> list[str]:
    return [
        T.export_done(lang, path=report.out_dir, dtype=report.dtype, seconds=report.seconds),
        T.export_check(lang, diff=report.max_logit_diff, tolerance=report.tolerance),
        f"{T.export_files(lang)}: " + ", ".join(report.files),
    ]


def _box(state: str, text: str, lang: str) -> str:
    return (
        f"<div class='qs-progress'><span class='qs-state qs-{state}'>{named('state', state, lang)}</span>"
        f"<pre style='white-space:pre-wrap;margin-top:.5rem'>{html.escape(text)}</pre></div>"
    )
