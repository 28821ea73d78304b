"""The Compare tab: tick runs, see their curves overlaid and a table of what differs; open an adapter from the table.

Everything shown comes from `Studio.compare` (run folders only). Clicking "open in Chat" or "open in
Evaluate" in a row puts that run's adapter in the tab's adapter list and switches to the tab.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import pandas as pd

from app import compare_charts, sweep_view
from app.feedback import problem
from app.i18n import T, named
from app.page import Page
from studio.locales import has, template

AXES = [(T.axis_step, "step"), (T.axis_tokens, "tokens")]


@dataclass
class CompareTab:
    runs: gr.CheckboxGroup
    refresh: gr.Button
    axis: gr.Radio
    hint: gr.Markdown
    loss: gr.Plot
    extras: gr.Plot
    table: gr.Dataframe
    watched: gr.Dataframe  # the watched prompts, a column per run: each run's answer at its latest evaluation
    status: gr.Markdown
    sweeps: sweep_view.SweepView  # a sweep's runs ranked, above the runs ticked by hand


@dataclass
class OpenTargets:
    """Where a row's adapter can be opened: the page's tabs and the adapter lists of Chat and Evaluate."""

    tabs: gr.Tabs
    chat: gr.Dropdown
    evaluate: gr.Dropdown


def layout(page: Page) -> CompareTab:
    labels = page.labels
    sweeps = sweep_view.layout(page)
    labels.add(gr.Markdown(T.compare_note("en")), T.compare_note, "value")
    with gr.Row(equal_height=True):
        runs = labels.add(
            gr.CheckboxGroup([], label=T.compare_runs("en"), scale=5, elem_id="qs-compare-runs"), T.compare_runs
        )
        refresh = labels.add(
            gr.Button(T.refresh("en"), size="sm", scale=1, elem_id="qs-compare-refresh"), T.refresh, "value"
        )
    axis = labels.add_choices(
        gr.Radio([(t("en"), v) for t, v in AXES], value="step", label=T.compare_axis("en"), elem_id="qs-compare-axis"),
        AXES,
    )
    labels.add(axis, T.compare_axis)
    hint = gr.Markdown(T.compare_pick("en"), elem_id="qs-compare-hint")
    loss = gr.Plot(
        compare_charts.loss_figure(page.studio.compare([]), "step", "en"), show_label=False, elem_id="qs-compare-loss"
    )
    extras = gr.Plot(show_label=False, visible=False, elem_id="qs-compare-extras")
    table = labels.add(
        gr.Dataframe(
            label=T.compare_table("en"),
            interactive=False,
            wrap=True,
            visible=False,
            # a few dozen rows at most: the page scrolls, never the table, whose last rows hid at 500 px
            max_height=4000,
            elem_id="qs-compare-table",
        ),
        T.compare_table,
    )
    watched = labels.add(
        gr.Dataframe(
            label=T.compare_watched("en"), interactive=False, wrap=True, visible=False, elem_id="qs-compare-watched"
        ),
        T.compare_watched,
    )
    status = gr.Markdown(elem_id="qs-compare-status")
    return CompareTab(runs, refresh, axis, hint, loss, extras, table, watched, status, sweeps)


def wire(page: Page, tab: CompareTab, targets: OpenTargets) -> None:
    studio, lang = page.studio, page.lang
    sweep_view.wire(page, tab.sweeps, [tab.refresh.click, targets.tabs.select])  # opening the tab re-reads them
    gr.on(  # the run list is labelled with states, in the page's language, as they are when the tab is opened
        [tab.refresh.click, lang.change, targets.tabs.select],
        lambda ticked, lng: run_choices(studio, ticked, lng),
        [tab.runs, lang],
        tab.runs,
        api_visibility="private",
    )
    # a redraw clears the last "opened" note
    outputs = [tab.hint, tab.loss, tab.extras, tab.table, tab.watched, tab.status]
    # the language redraws titles and headers too; one endpoint for the three triggers
    gr.on(
        [tab.runs.change, tab.axis.change, lang.change],
        lambda ticked, axis, lng: show(studio, ticked, axis, lng),
        [tab.runs, tab.axis, lang],
        outputs,
        api_name="compare",
        show_progress="hidden",
    )

    def open_adapter(evt: gr.SelectData, lng: str, shown):
        target = {T.compare_in_chat(lng): ("chat", targets.chat), T.compare_in_eval(lng): ("eval", targets.evaluate)}
        if evt.value not in target or shown is None or not 0 < evt.index[1] < len(shown.columns):
            return {targets.tabs: gr.skip()}
        tab_id, dropdown = target[evt.value]
        [row] = studio.compare([shown.columns[evt.index[1]]]).rows  # a run's column is headed by its id
        return {
            targets.tabs: gr.update(selected=tab_id),
            dropdown: gr.update(value=row.adapter),
            tab.status: T.compare_opened(lng, run=row.run_id),
        }

    tab.table.select(
        open_adapter,
        [lang, tab.table],
        [targets.tabs, targets.chat, targets.evaluate, tab.status],
        api_visibility="private",
    )


def run_choices(studio, ticked: list[str] | None = None, lang: str = "en"):
    """Every run, labelled with its state; ticked runs stay ticked while they exist."""
    statuses = studio.runs()
    names = {s.run_id for s in statuses}
    choices = [(f"{s.run_id} · {named('state', s.state, lang)}", s.run_id) for s in statuses]
    return gr.update(choices=choices, value=[run for run in ticked or [] if run in names])


def show(studio, ticked: list[str] | None, axis: str, lang: str) -> list:
    if not ticked:
        empty = studio.compare([])
        return [
            T.compare_pick(lang),
            compare_charts.loss_figure(empty, axis, lang),
            gr.update(visible=False),
            gr.update(visible=False),
            gr.update(visible=False),
            "",
        ]
    try:
        comparison = studio.compare(ticked)
    except Exception as error:  # the tab stays usable; the reason is shown where the charts were
        return [problem(error, lang), gr.skip(), gr.skip(), gr.skip(), gr.skip(), ""]
    extras = bool(compare_charts.extra_names(comparison))
    return [
        "",
        compare_charts.loss_figure(comparison, axis, lang),
        gr.update(value=compare_charts.extras_figure(comparison, axis, lang) if extras else None, visible=extras),
        gr.update(value=comparison_table(comparison, lang), visible=True),
        _watched_update(comparison, lang),
        "",
    ]


def _watched_update(comparison, lang: str):
    """Each watched prompt in a row, each run's latest answer to it in its column; hidden when no run watched."""
    rows = comparison.watched()
    if not rows:
        return gr.update(visible=False)
    steps = [
        f"{r.run_id} ({T.watched_col_step(lang)} {r.watched.step})" if r.watched else r.run_id for r in comparison.rows
    ]
    table = pd.DataFrame([[prompt, *answers] for prompt, answers in rows], columns=[T.answers_col_prompt(lang), *steps])
    return gr.update(value=table, visible=True)


def comparison_table(comparison, lang: str = "en") -> pd.DataFrame:
    """One column per run (as `qlora-studio runs --compare` prints it): the backend's rows under their names in
    `lang`, then the two rows whose cells open the run's adapter in Chat or Evaluate."""
    columns = comparison.table()
    rows = []
    for column, cells in columns[1:]:  # the first holds the run ids: the headers
        if column == "state":
            cells = [named("state", state, lang) for state in cells]
        rows.append([_header(column, lang), *cells])
    rows.append([T.compare_col_open(lang), *[T.compare_in_chat(lang) if r.adapter else "–" for r in comparison.rows]])
    rows.append(
        [T.compare_col_open_eval(lang), *[T.compare_in_eval(lang) if r.adapter else "–" for r in comparison.rows]]
    )
    return pd.DataFrame(rows, columns=[T.compare_col_run(lang), *columns[0][1]])


def _header(column: str, lang: str) -> str:
    text = getattr(T, f"compare_col_{column.replace('-', '_')}", None)
    if text is not None:
        return text(lang)
    if "." in column:  # a config field: its path (what the CLI and YAML call it), after its label where it has one
        label = template(column, lang, column) if has(column) else column
        return column if label == column else f"{label} ({column})"
    return column.upper()  # a metric: BLEU-4, ROUGE-L, ...
