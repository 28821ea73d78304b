"""The Train tab's live view of one run: run picker, progress bar, loss / learning-rate / memory charts, log.

Every open page polls once a second. The run's events are folded once for all pages
(Studio.history) and its figures built once per new snapshot (FigureCache); a page only
receives figures when its run has moved on since it last drew them.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr

from app.charts import FigureCache
from app.feedback import problem
from app.i18n import Labels, T
from studio.api import Studio
from studio.errors import StudioError
from studio.monitoring import RunHistory, format_duration

_FIGURES = FigureCache()


@dataclass
class Monitor:
    runs: gr.Dropdown
    refresh_runs: gr.Button
    progress: gr.HTML
    loss: gr.Plot
    lr: gr.Plot
    memory: gr.Plot
    log: gr.Textbox
    drawn: gr.State  # (run_id, offset, lang) this page last drew

    @property
    def outputs(self) -> list:
        return [self.drawn, self.progress, self.loss, self.lr, self.memory, self.log]


def layout(labels: Labels) -> Monitor:
    with gr.Row():
        runs = labels.add(gr.Dropdown(choices=[], label=T.runs("en"), scale=4, elem_id="qs-runs"), T.runs)
        refresh_runs = labels.add(gr.Button(T.refresh("en"), size="sm", scale=1), T.refresh, "value")
    progress = gr.HTML(elem_id="qs-progress")
    with gr.Row():
        loss = gr.Plot(show_label=False, elem_id="qs-loss-chart")
        lr = gr.Plot(show_label=False, elem_id="qs-lr-chart")
        memory = gr.Plot(show_label=False, elem_id="qs-memory-chart")
    log = labels.add(
        gr.Textbox(label=T.logs("en"), lines=8, max_lines=8, interactive=False, autoscroll=True, elem_id="qs-log"), T.logs
    )
    return Monitor(runs, refresh_runs, progress, loss, lr, memory, log, gr.State(None))


def refresh(studio: Studio, run_id: str | None, drawn, lang: str, force: bool = False) -> list:
    """Values for Monitor.outputs: progress always, charts and log only when there is something new to draw."""
    if not run_id:
        empty = _FIGURES.get(RunHistory(""), lang)
        return [None, _empty_progress(lang), *empty, ""]
    try:
        history, state = studio.history(run_id), studio.status(run_id).state
    except StudioError as error:
        return [None, f"<div class='qs-progress qs-empty'>{problem(error, lang)}</div>", *[gr.skip()] * 4]
    key = (run_id, history.offset, lang)
    progress = progress_html(history, state, lang)
    if key == drawn and not force:
        return [drawn, progress, *[gr.skip()] * 4]
    log = "\n".join(history.log[-40:])
    return [key, progress, *_FIGURES.get(history, lang), log]


def run_choices(studio: Studio) -> list[str]:
    return [status.run_id for status in studio.runs()]  # state and progress live in the progress box, never stale


def progress_html(history: RunHistory, state: str, lang: str) -> str:
    percent = round(history.fraction_done * 100, 1)
    details = [
        f"{T.steps(lang)} {history.step}/{history.total_steps or '?'}",
        f"{T.elapsed(lang)} {format_duration(history.elapsed_s, '–')}",
        f"{T.eta(lang)} {format_duration(history.eta_s, '–')}",
    ]
    if history.tokens_per_second:
        details.append(f"{history.tokens_per_second:.0f} tok/s")
    method = f"<div class='qs-method'>{html.escape(history.method)}</div>" if history.method else ""
    error = f"<div class='qs-error'>{html.escape(history.error)}</div>" if history.error else ""
    return (
        f"<div class='qs-progress'><div class='qs-head'><b>{html.escape(history.run_id)}</b>"
        f"<span class='qs-state qs-{state}'>{state}</span><span class='qs-phase'>{html.escape(history.phase)}</span></div>"
        f"<div class='qs-bar'><div class='qs-fill' style='width:{percent}%'></div></div>"
        f"<div class='qs-details'>{' · '.join(details)} · {percent}%</div>{method}{error}</div>"
    )


def _empty_progress(lang: str) -> str:
    return f"<div class='qs-progress qs-empty'>{html.escape(T.no_run(lang))}</div>"
