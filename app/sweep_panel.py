"""The Train tab's Sweep panel: the form above plus a few fields with several values, queued as one run each.

The user writes one field per line (`training.learning_rate = 1e-4, 2e-4`), picks a grid or random draws, sees the
planned run names, and queues them; everything is planned and checked by the backend (`Studio.plan_sweep`,
`Studio.start_sweep`), which refuses a bad value before anything is queued. Compare runs ranks the sweep.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import pandas as pd
from gradio.blocks import Block

from app import run_monitor
from app.feedback import failure, said
from app.i18n import T
from app.page import Page
from studio.api import SweepSpec
from studio.locales import has, template

MODES = [(T.sweep_mode_grid, "grid"), (T.sweep_mode_random, "random")]


@dataclass
class SweepPanel:
    axes: gr.Textbox  # one field per line: path = values, or low..high
    mode: gr.Radio
    count: gr.Number
    seed: gr.Number
    plan: gr.Button
    queue: gr.Button
    planned: gr.Dataframe  # the runs the sweep would queue, in order
    message: gr.Markdown


def layout(page: Page) -> SweepPanel:
    labels = page.labels
    with labels.add(gr.Accordion(T.sweep_title("en"), open=False, elem_id="qs-sweep"), T.sweep_title):
        labels.add(gr.Markdown(T.sweep_note("en")), T.sweep_note, "value")
        axes = labels.add(
            gr.Textbox(
                label=T.sweep_axes("en"),
                placeholder=T.sweep_axes_example("en"),
                lines=3,
                elem_id="qs-sweep-axes",
            ),
            T.sweep_axes,
        )
        labels.add(axes, T.sweep_axes_example, "placeholder")
        with gr.Row(equal_height=True):
            mode = labels.add_choices(
                gr.Radio(
                    [(text("en"), value) for text, value in MODES],
                    value="grid",
                    label=T.sweep_mode("en"),
                    scale=2,
                    elem_id="qs-sweep-mode",
                ),
                MODES,
            )
            labels.add(mode, T.sweep_mode)
            count = labels.add(
                gr.Number(4, precision=0, minimum=1, label=T.sweep_count("en"), elem_id="qs-sweep-count"), T.sweep_count
            )
            seed = labels.add(
                gr.Number(0, precision=0, label=T.sweep_seed("en"), elem_id="qs-sweep-seed"), T.sweep_seed
            )
        with gr.Row():
            plan = labels.add(gr.Button(T.sweep_plan("en"), elem_id="qs-sweep-plan"), T.sweep_plan, "value")
            queue = labels.add(
                gr.Button(T.sweep_queue("en"), variant="primary", elem_id="qs-sweep-queue"), T.sweep_queue, "value"
            )
        planned = gr.Dataframe(interactive=False, wrap=True, visible=False, elem_id="qs-sweep-planned")
        message = gr.Markdown(elem_classes="qs-message", elem_id="qs-sweep-message")
    return SweepPanel(axes, mode, count, seed, plan, queue, planned, message)


def wire(page: Page, panel: SweepPanel, runs: gr.Dropdown) -> None:
    """`runs`: the Train tab's run list, which shows the sweep's first run once it is queued."""
    inputs: set[Block] = {page.lang, panel.axes, panel.mode, panel.count, panel.seed, *page.form.inputs}
    last = gr.State(None)  # the last message in every language, for a language switch
    panel.plan.click(
        lambda values: _plan(page, panel, values), inputs, [panel.planned, panel.message, last], api_name="plan_sweep"
    )
    panel.queue.click(
        lambda values: _queue(page, panel, values),
        inputs,
        [panel.planned, panel.message, last, runs],
        api_name="queue_sweep",
    )
    page.lang.change(
        lambda both, lng: both[lng] if both else gr.skip(), [last, page.lang], panel.message, api_visibility="private"
    )


def _planned(page: Page, panel: SweepPanel, values):
    spec = SweepSpec.from_lines(
        values[panel.axes] or "", values[panel.mode], int(values[panel.count] or 1), int(values[panel.seed] or 0)
    )
    return page.studio.plan_sweep(page.form.read(values), spec)


def _plan(page: Page, panel: SweepPanel, values):
    lang = values[page.lang]
    try:
        plan = _planned(page, panel, values)
    except Exception as error:
        return (gr.update(visible=False), *said(failure(error), lang))
    count = len(plan.runs)
    shown = gr.update(value=plan_table(plan.table(), lang), visible=True)
    return (shown, *said(lambda lng: T.sweep_planned(lng, count=count), lang))


def _queue(page: Page, panel: SweepPanel, values):
    lang, studio = values[page.lang], page.studio
    try:
        plan = _planned(page, panel, values)
        sweep_id = studio.start_sweep(plan)
    except Exception as error:
        return (gr.update(visible=False), *said(failure(error), lang), gr.skip())
    first = next((info.runs[0] for info in studio.sweeps() if info.sweep_id == sweep_id and info.runs), None)
    count = len(plan.runs)
    message = said(lambda lng: T.sweep_queued(lng, sweep=sweep_id, count=count), lang)
    shown = gr.update(value=plan_table(plan.table(), lang), visible=True)
    return (shown, *message, gr.update(choices=run_monitor.run_choices(studio), value=first))


def plan_table(columns: list[tuple[str, list[str]]], lang: str) -> pd.DataFrame:
    """The planned runs, a row each: #, run name, each varied field."""
    return pd.DataFrame({column_header(name, lang): cells for name, cells in columns})


def column_header(column: str, lang: str) -> str:
    """A column's header: the run and state in `lang`, a config field by its label and path (what YAML calls it)."""
    if column == "run":
        return T.compare_col_run(lang)
    if column == "state":
        return T.compare_col_state(lang)
    if "." in column and has(column):
        label = template(column, lang, column)
        return column if label == column else f"{label} ({column})"
    return column
