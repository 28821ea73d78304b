"""The Evaluate & Predict tab: base vs adapter metrics and predictions on held-out samples."""

from __future__ import annotations

import html

import gradio as gr
import pandas as pd

from app.adapter_picker import adapter_picker
from app.background import run_with_updates
from app.form import ConfigForm
from app.i18n import Labels, T
from studio.chat import ChatEngine
from studio.evaluation.runner import EvalReport, evaluate
from studio.service import TrainingService


def build(service: TrainingService, engine: ChatEngine, form: ConfigForm, labels: Labels) -> gr.Dropdown:
    labels.add(gr.Markdown(T.eval_note("en")), T.eval_note, "value")
    adapter = adapter_picker(service, labels, "qs-eval-adapter")
    with gr.Row():
        form.add("evaluation", "datasets", scale=2)
        form.add("evaluation", "max_samples", scale=1)
        form.add("evaluation", "batch_size", scale=1)
        form.add("evaluation", "sample", scale=1)
        compare = labels.add(gr.Checkbox(True, label=T.compare_base("en"), scale=1), T.compare_base)
    start = labels.add(gr.Button(T.start_eval("en"), variant="primary", elem_id="qs-eval-start"), T.start_eval, "value")
    progress = gr.HTML(elem_id="qs-eval-progress")
    metrics = labels.add(gr.Dataframe(label=T.metrics("en"), elem_id="qs-eval-metrics", interactive=False), T.metrics)
    samples = labels.add(gr.Dataframe(label=T.samples("en"), wrap=True, max_height=420, interactive=False, elem_id="qs-eval-samples"), T.samples)

    def run(adapter_path, compare_base, *values):
        try:
            config = form.read(*values)
        except Exception as error:
            yield _error(error), gr.skip(), gr.skip()
            return
        work = lambda report: evaluate(engine, config, adapter_path or None, compare_base, progress=report)  # noqa: E731
        for kind, value in run_with_updates(work):
            if kind == "progress":
                yield _progress(value), gr.skip(), gr.skip()
            elif kind == "error":
                yield _error(value), gr.skip(), gr.skip()
            else:
                yield _finished(value), metrics_table(value), samples_table(value)

    start.click(run, [adapter, compare, *form.components], [progress, metrics, samples])
    return adapter


def metrics_table(report: EvalReport) -> pd.DataFrame:
    columns = report.columns
    rows = []
    for metric in report.metrics[columns[0]]:
        row = {"metric": metric, **{c: report.metrics[c][metric] for c in columns}}
        if len(columns) == 2:
            row["difference"] = round(report.metrics[columns[1]][metric] - report.metrics[columns[0]][metric], 4)
        rows.append(row)
    return pd.DataFrame(rows)


def samples_table(report: EvalReport) -> pd.DataFrame:
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


def _finished(report: EvalReport) -> str:
    return f"<div class='qs-progress'><span class='qs-state qs-finished'>finished</span> {len(report.samples)} samples · results in <code>{html.escape(str(report.out_dir))}</code></div>"


def _error(error: Exception) -> str:
    return f"<div class='qs-progress'><span class='qs-state qs-failed'>failed</span><div class='qs-error'>{html.escape(str(error))}</div></div>"
