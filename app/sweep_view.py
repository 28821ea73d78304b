"""Compare runs' sweep page: pick a sweep, see its runs ranked by a metric with the fields it varies as columns and
their curves overlaid, cancel what is still queued.

Everything comes from `Studio.sweep_ranking` (the run folders); while some run of the shown sweep has not ended, a
timer redraws the ranking every few seconds, and stops once every run has ended.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import pandas as pd

from app import compare_charts
from app.feedback import problem
from app.i18n import T, named
from app.page import Page
from app.sweep_panel import column_header
from studio.locales import in_language

REDRAW_S = 5.0  # a redraw reads every run's events: often enough for runs that take minutes
TRAINING_METRICS = {
    "best_eval_loss": T.sweep_metric_best_eval_loss,
    "final_train_loss": T.sweep_metric_final_train_loss,
}


@dataclass
class SweepView:
    box: gr.Accordion  # closed until the runs folder has a sweep
    pick: gr.Dropdown
    metric: gr.Dropdown
    refresh: gr.Button
    summary: gr.Markdown
    table: gr.Dataframe
    loss: gr.Plot
    abort_running: gr.Checkbox
    cancel: gr.Button
    status: gr.Markdown
    timer: gr.Timer
    seen: gr.State  # the sweeps the picker listed last: a sweep new since then is shown at once


def layout(page: Page) -> SweepView:
    labels = page.labels
    with labels.add(gr.Accordion(T.sweeps_title("en"), open=False, elem_id="qs-sweeps"), T.sweeps_title) as box:
        with gr.Row(equal_height=True):
            pick = labels.add(gr.Dropdown([], label=T.sweep_pick("en"), scale=4, elem_id="qs-sweep-pick"), T.sweep_pick)
            metric = labels.add(
                gr.Dropdown(
                    metric_choices(list(TRAINING_METRICS), "en"),
                    value="best_eval_loss",
                    label=T.sweep_metric("en"),
                    scale=2,
                    elem_id="qs-sweep-metric",
                ),
                T.sweep_metric,
            )
            refresh = labels.add(
                gr.Button(T.refresh("en"), size="sm", scale=1, elem_id="qs-sweep-refresh"), T.refresh, "value"
            )
        summary = gr.Markdown(T.sweep_none("en"), elem_id="qs-sweep-summary")
        table = gr.Dataframe(interactive=False, wrap=True, visible=False, max_height=4000, elem_id="qs-sweep-table")
        loss = gr.Plot(show_label=False, visible=False, elem_id="qs-sweep-loss")
        with gr.Row(equal_height=True):
            abort_running = labels.add(
                gr.Checkbox(False, label=T.sweep_abort_running("en"), scale=3, elem_id="qs-sweep-abort-running"),
                T.sweep_abort_running,
            )
            cancel = labels.add(
                gr.Button(T.sweep_cancel("en"), variant="stop", size="sm", scale=1, elem_id="qs-sweep-cancel"),
                T.sweep_cancel,
                "value",
            )
        status = gr.Markdown(elem_id="qs-sweep-status")
        timer = gr.Timer(REDRAW_S, active=False)
    seen = gr.State([])
    return SweepView(box, pick, metric, refresh, summary, table, loss, abort_running, cancel, status, timer, seen)


def wire(page: Page, view: SweepView, refreshes: list) -> None:
    """`refreshes`: more triggers that re-read the list of sweeps (Compare's own refresh, the tab being opened)."""
    studio, lang = page.studio, page.lang
    gr.on(
        [view.refresh.click, *refreshes],
        lambda chosen, seen: sweep_choices(studio, chosen, seen),
        [view.pick, view.seen],
        [view.pick, view.box, view.seen],
        api_visibility="private",
        queue=False,
    )
    outputs = [view.summary, view.table, view.loss, view.metric, view.timer]
    gr.on(  # metric.input, not change: the redraw sets the metric's choices, which must not redraw again
        [view.pick.change, view.metric.input, lang.change, view.timer.tick],
        lambda sweep, metric, lng: show(studio, sweep, metric, lng),
        [view.pick, view.metric, lang],
        outputs,
        api_name="sweep_ranking",
        show_progress="hidden",
    )
    view.cancel.click(
        lambda sweep, abort, lng: cancel(studio, sweep, abort, lng),
        [view.pick, view.abort_running, lang],
        view.status,
        api_name="cancel_sweep",
    ).then(
        lambda sweep, metric, lng: show(studio, sweep, metric, lng),
        [view.pick, view.metric, lang],
        outputs,
        api_visibility="private",
        show_progress="hidden",
    )


def sweep_choices(studio, chosen: str | None = None, seen: list[str] | None = None) -> tuple:
    """Every sweep, newest first, and the box open when there is one. A sweep queued since the list was last read
    is shown (it is what the user came for); else the chosen one stays chosen."""
    sweeps = studio.sweeps()
    ids = [info.sweep_id for info in sweeps]
    new = [sweep_id for sweep_id in ids if sweep_id not in (seen or [])]
    choices = [(f"{info.sweep_id} · {', '.join(info.axes)}", info.sweep_id) for info in sweeps]
    picked = gr.update(choices=choices, value=new[0] if new else chosen if chosen in ids else None)
    return picked, gr.update(open=True) if ids else gr.skip(), ids


def metric_choices(metrics: list[str], lang: str) -> list[tuple[str, str]]:
    """Metrics by name in `lang`: the training ones by their words, an evaluation's as its acronym (ROUGE-L)."""
    return [(TRAINING_METRICS[m](lang) if m in TRAINING_METRICS else m.upper(), m) for m in metrics]


def show(studio, sweep_id: str | None, metric: str | None, lang: str) -> list:
    """[summary, ranked table, overlaid loss curves, metric choices, timer]: the timer runs while a run is live."""
    if not sweep_id:
        hidden = gr.update(visible=False)
        return [T.sweep_none(lang), hidden, hidden, gr.skip(), gr.update(active=False)]
    try:
        ranking = studio.sweep_ranking(sweep_id, metric or None)
    except Exception as error:  # a sweep whose runs were deleted meanwhile: said where the table was
        hidden = gr.update(visible=False)
        return [problem(error, lang), hidden, hidden, gr.skip(), gr.update(active=False)]
    figure = compare_charts.loss_figure(ranking.comparison, "step", lang)
    return [
        _summary(ranking, lang),
        gr.update(value=ranking_table(ranking, lang), visible=True),
        gr.update(value=figure, visible=True),
        gr.update(choices=metric_choices(ranking.metrics, lang), value=ranking.metric),
        gr.update(active=ranking.live),
    ]


def _summary(ranking, lang: str) -> str:
    name = metric_choices([ranking.metric], lang)[0][0]
    order = T.sweep_lowest_first(lang) if ranking.lower_is_better else T.sweep_highest_first(lang)
    ended = sum(run.state not in ("queued", "starting", "running") for run in ranking.runs)
    text = T.sweep_summary(lang, metric=name, order=order, ended=ended, total=len(ranking.runs))
    if ranking.best is not None:
        text += " " + T.sweep_best(lang, run=ranking.best.run_id)
    return text + (f" {T.sweep_live(lang)}" if ranking.live else "")


def ranking_table(ranking, lang: str) -> pd.DataFrame:
    """A row per run, best first: rank, run, state, each varied field, the metric, why a run is not ranked."""
    columns = {}
    for name, cells in ranking.table():
        if name == "state":
            cells = [named("state", state, lang) for state in cells]
        elif name == "note":
            cells = [in_language(note, lang) for note in cells]
        header = {"rank": T.sweep_col_rank(lang), "note": T.sweep_col_note(lang)}.get(name)
        if name == ranking.metric:
            header = metric_choices([name], lang)[0][0]
        columns[header or column_header(name, lang)] = cells
    return pd.DataFrame(columns)


def cancel(studio, sweep_id: str | None, abort_running: bool, lang: str) -> str:
    if not sweep_id:
        return T.sweep_none(lang)
    try:
        return in_language(studio.cancel_sweep(sweep_id, bool(abort_running)).message, lang)
    except Exception as error:
        return problem(error, lang)
