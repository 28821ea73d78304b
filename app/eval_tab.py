"""The Evaluate & Predict tab: base vs adapter metrics and predictions on held-out samples."""

from __future__ import annotations

import html
import time
from dataclasses import dataclass

import gradio as gr
import pandas as pd

from app import adapter_picker
from app.background import run_with_updates
from app.feedback import problem
from app.i18n import T, named
from app.page import Page
from studio.runs.text import format_duration


@dataclass
class EvalTab:
    picker: adapter_picker.AdapterPicker
    compare: gr.Checkbox
    start: gr.Button
    progress: gr.HTML
    metrics: gr.Dataframe
    samples: gr.Dataframe
    report: gr.State  # the last evaluation's report, so a language switch redraws it
    scorer: ScoreBox


@dataclass
class ScoreBox:
    """A reward model's score of any prompt and answer (the adapter picked above must be an rm run's)."""

    prompt: gr.Textbox
    answer: gr.Textbox
    button: gr.Button
    result: gr.Markdown


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
    # hidden until there are results: an empty table would show made-up column headers
    metrics = labels.add(
        gr.Dataframe(label=T.metrics("en"), elem_id="qs-eval-metrics", interactive=False, visible=False), T.metrics
    )
    samples = labels.add(
        gr.Dataframe(
            label=T.samples("en"),
            wrap=True,
            max_height=420,
            interactive=False,
            elem_id="qs-eval-samples",
            visible=False,
        ),
        T.samples,
    )
    return EvalTab(picker, compare, start, progress, metrics, samples, gr.State(None), _score_box(page))


def _score_box(page: Page) -> ScoreBox:
    labels = page.labels
    with labels.add(gr.Accordion(T.score_box("en"), open=False), T.score_box):
        labels.add(gr.Markdown(T.score_box_note("en")), T.score_box_note, "value")
        with gr.Row():
            prompt = labels.add(
                gr.Textbox(label=T.score_prompt("en"), lines=2, elem_id="qs-score-prompt"), T.score_prompt
            )
            answer = labels.add(
                gr.Textbox(label=T.score_answer("en"), lines=2, elem_id="qs-score-answer"), T.score_answer
            )
        button = labels.add(
            gr.Button(T.score_button("en"), size="sm", elem_id="qs-score-button"), T.score_button, "value"
        )
        result = gr.Markdown(elem_id="qs-score-result")
    return ScoreBox(prompt, answer, button, result)


def wire(page: Page, tab: EvalTab) -> None:
    adapter_picker.wire(page.studio, tab.picker, page.lang)

    def run(values):
        lang, adapter, compare = values[page.lang], values[tab.picker.dropdown] or None, values[tab.compare]
        if compare and not adapter:  # never score the base alone while the page promises a comparison
            yield _error(T.compare_needs_adapter(lang), lang), gr.skip(), gr.skip(), None
            return
        try:
            config = page.form.read(values)
        except Exception as error:
            yield _error(problem(error, lang, markdown=False), lang), gr.skip(), gr.skip(), None
            return
        work = lambda report: page.studio.evaluate(config, adapter, compare, progress=report)  # noqa: E731
        clock = _Clock()
        for kind, value in run_with_updates(work, tick_s=1.0):
            if kind in ("progress", "tick"):
                yield clock.show(value, lang), gr.skip(), gr.skip(), gr.skip()
            elif kind == "error":
                yield _error(problem(value, lang, markdown=False), lang), gr.skip(), gr.skip(), None
            else:
                yield *shown(value, lang), value

    inputs = {page.lang, tab.picker.dropdown, tab.compare} | page.form.inputs
    outputs = [tab.progress, tab.metrics, tab.samples, tab.report]
    tab.start.click(run, inputs, outputs, api_name="evaluate")
    _wire_score_box(page, tab)
    page.lang.change(  # the results in the page's language
        lambda report, lng: shown(report, lng) if report is not None else (gr.skip(),) * 3,
        [tab.report, page.lang],
        [tab.progress, tab.metrics, tab.samples],
        api_visibility="private",
    )


def _wire_score_box(page: Page, tab: EvalTab) -> None:
    box = tab.scorer

    def score(values):
        lang = values[page.lang]
        try:
            config = page.form.read(values)
            value = page.studio.score_text(config, values[tab.picker.dropdown], values[box.prompt], values[box.answer])
        except Exception as error:
            return problem(error, lang)
        return T.score_result(lang, score=f"{value:+.4f}")

    inputs = {page.lang, tab.picker.dropdown, box.prompt, box.answer} | page.form.inputs
    box.button.click(score, inputs, box.result, api_name="score_text")


def shown(report, lang: str) -> tuple:
    """The progress box, metrics table and samples table of a finished evaluation."""
    samples = samples_table(report, lang)
    return (
        _finished(report, lang),
        gr.update(value=metrics_table(report, lang), visible=True),
        gr.update(value=samples, visible=True, column_widths=_widths(samples)),
    )


def _widths(samples: pd.DataFrame) -> list[str] | None:
    """Prompt and reference a quarter each, the predictions share the rest: every column readable, none cut off."""
    if len(samples.columns) < 3:
        return None
    predictions = len(samples.columns) - 2
    return ["25%", "25%", *[f"{50 / predictions:.0f}%"] * predictions]


def metrics_table(report, lang: str = "en") -> pd.DataFrame:
    columns = report.columns
    shown = {c: T.base(lang) if c == "base" else c for c in columns}
    rows = []
    for metric in report.metrics[columns[0]]:
        row = {T.col_metric(lang): metric, **{shown[c]: report.metrics[c][metric] for c in columns}}
        if len(columns) == 2:
            row[T.col_difference(lang)] = round(
                report.metrics[columns[1]][metric] - report.metrics[columns[0]][metric], 4
            )
        rows.append(row)
    return pd.DataFrame(rows)


def samples_table(report, lang: str = "en") -> pd.DataFrame:
    rows = []
    if not report.samples:  # plain text: scored for perplexity, nothing generated
        return pd.DataFrame([{T.col_text(lang): f"{report.scored} × {T.eval_kind_text(lang)}"}])
    for index, sample in enumerate(report.samples):
        row = {T.col_prompt(lang): sample.prompt[-1]["content"], T.col_reference(lang): sample.label}
        for c in report.columns:
            row[T.col_prediction(lang, column=T.base(lang) if c == "base" else c)] = report.predictions[c][index]
        rows.append(row)
    return pd.DataFrame(rows)


class _Clock:
    """The progress box of one evaluation: the latest reported stage and count, with time that keeps moving."""

    def __init__(self):
        self.event, self.seen_at, self.started = None, time.time(), time.time()

    def show(self, event, lang: str) -> str:
        if event is not None:
            self.event, self.seen_at = event, time.time()
        if self.event is None:
            return _bar(T.loading(lang), "", 0, time.time() - self.started, None, lang)
        since = time.time() - self.seen_at
        eta = None if self.event.eta_s is None else max(0.0, self.event.eta_s - since)
        percent = 100 * self.event.done / max(1, self.event.total)
        count = f"{self.event.done}/{self.event.total}"
        return _bar(named("stage", self.event.stage, lang), count, percent, self.event.elapsed_s + since, eta, lang)


def _bar(stage: str, count: str, percent: float, elapsed: float, eta: float | None, lang: str) -> str:
    remaining = "–" if eta is None else format_duration(eta)
    return (
        f"<div class='qs-progress'><div class='qs-head'><b>{html.escape(stage)}</b><span class='qs-phase'>{count}"
        f" · {T.elapsed(lang)} {format_duration(elapsed)} · {T.eta(lang)} {remaining}</span></div>"
        f"<div class='qs-bar'><div class='qs-fill' style='width:{percent:.0f}%'></div></div></div>"
    )


def _finished(report, lang: str) -> str:
    kind = getattr(T, f"eval_kind_{report.kind}", None)
    notes = [kind(lang)] if kind else []
    notes += [note.text(lang) for note in report.notes]
    shown = "".join(f"<div class='qs-method'>{html.escape(note)}</div>" for note in notes)
    return (
        f"<div class='qs-progress'><span class='qs-state qs-finished'>{T.state_finished(lang)}</span> "
        f"{T.samples_done(lang, count=report.scored or len(report.samples))} "
        f"<code>{html.escape(str(report.out_dir))}</code>{shown}</div>"
    )


def _error(text: str, lang: str) -> str:
    return (
        f"<div class='qs-progress'><span class='qs-state qs-failed'>{T.state_failed(lang)}</span>"
        f"<div class='qs-error'>{html.escape(text)}</div></div>"
    )
