"""The Evaluate & Predict tab: base vs adapter metrics and predictions on held-out samples."""

from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr
import pandas as pd

from app import adapter_picker
from app.background import run_with_updates
from app.feedback import problem
from app.i18n import T
from app.page import Page


@dataclass
class EvalTab:
    picker: adapter_picker.AdapterPicker
    compare: gr.Checkbox
    start: gr.Button
    progress: gr.HTML
    metrics: gr.Dataframe
    samples: gr.Dataframe


def layout(page: Page) -> EvalTab:
    labels, form = page.labels, page.form
    labels.add(gr.Markdown(T.eval_note("en")), T.eval_note, "value")
    picker = adapter_picker.layout(labels, "qs-eval-adapter")
    with gr.Row():
        form.add("evaluation.datasets", scale=2)
        form.add("evaluation.max_samples", scale=1)
        form.add("evaluation.batch_size", scale=1)
        form.add("evaluation.sample", scale=1)
        compare = labels.add(gr.Checkbox(True, label=T.compare_base("en"), scale=1), T.compare_base)
    start = labels.add(gr.Button(T.start_eval("en"), variant="primary", elem_id="qs-eval-start"), T.start_eval, "value")
    progress = gr.HTML(elem_id="qs-eval-progress")
    metrics = labels.add(gr.Dataframe(label=T.metrics("en"), elem_id="qs-eval-metrics", interactive=False), T.metrics)
    samples = labels.add(
        gr.Dataframe(label=T.samples("en"), wrap=True, max_height=420, interactive=False, elem_id="qs-eval-samples"), T.samples
    )
    return EvalTab(picker, compare, start, progress, metrics, samples)


def wire(page: Page, tab: EvalTab) -> None:
    adapter_picker.wire(page.studio, tab.picker, page.lang)

    def run(values):
        lang, adapter, compare = values[page.lang], values[tab.picker.dropdown] or None, values[tab.compare]
        if compare and not adapter:  # never score the base alone while the page promises a comparison
            yield _error(T.compare_needs_adapter(lang)), gr.skip(), gr.skip()
            return
        try:
            config = page.form.read(values)
        except Exception as error:
            yield _error(problem(error, lang)), gr.skip(), gr.skip()
            return
        work = lambda report: page.studio.evaluate(config, adapter, compare, progress=report)  # noqa: E731
        for kind, value in run_with_updates(work):
            if kind == "progress":
                yield _progress(value), gr.skip(), gr.skip()
            elif kind == "error":
                yield _error(problem(value, lang)), gr.skip(), gr.skip()
            else:
                yield _finished(value), metrics_table(value), samples_table(value)

    inputs = {page.lang, tab.picker.dropdown, tab.compare} | page.form.inputs
    tab.start.click(run, inputs, [tab.progress, tab.metrics, tab.samples], api_name="evaluate")


def metrics_table(report) -> pd.DataFrame:
    columns = report.columns
    rows = []
    for metric in report.metrics[columns[0]]:
        row = {"metric": metric, **{c: report.metrics[c][metric] for c in columns}}
        if len(columns) == 2:
            row["difference"] = round(report.metrics[columns[1]][metric] - report.metrics[columns[0]][metric], 4)
        rows.append(row)
    return pd.DataFrame(rows)


def samples_table(report) -> pd.DataFrame:
    rows = []
    for index, sample in enumerate(report.samples):
        row = {"prompt": sample.prompt[-1]["content"], "reference": sample.label}
        row.update({f"{c} prediction": report.predictions[c][index] for c in report.columns})
        rows.append(row)
    return pd.DataFrame(rows)


def _progress(event) -> str:
    percent = 100 * event.done / max(1, event.total)
    eta = "–" if event.eta_s is None else f"{event.eta_s:.0f} s"
    return (
        f"<div class='qs-progress'><div class='qs-head'><b>{event.stage}</b><span class='qs-phase'>{event.done}/{event.total}"
        f" · elapsed {event.elapsed_s:.0f} s · remaining {eta}</span></div>"
        f"<div class='qs-bar'><div class='qs-fill' style='width:{percent:.0f}%'></div></div></div>"
    )


def _finished(report) -> str:
    return (
        f"<div class='qs-progress'><span class='qs-state qs-finished'>finished</span> {len(report.samples)} samples · "
        f"results in <code>{html.escape(str(report.out_dir))}</code></div>"
    )


def _error(markdown: str) -> str:
    return f"<div class='qs-progress'><span class='qs-state qs-failed'>failed</span><div class='qs-error'>{html.escape(markdown)}</div></div>"
