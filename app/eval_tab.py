"""The Evaluate & Predict tab: base vs adapter metrics and predictions on held-out samples."""

from __future__ import annotations

import html
import shutil
import tempfile
import time
import typing
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from app import adapter_picker
from app.background import run_with_updates
from app.feedback import problem
from app.i18n import T, named
from app.page import Page
from studio.config import TaskMetric
from studio.runs.text import format_duration

TASK_METRICS = typing.get_args(TaskMetric)


@dataclass
class EvalTab:
    picker: adapter_picker.AdapterPicker
    compare: gr.Checkbox
    start: gr.Button
    progress: gr.HTML
    metrics: gr.Dataframe
    samples: gr.Dataframe
    order: gr.Dropdown  # the task metric whose change sorts the samples (worst first)
    downloads: gr.File  # the predictions as JSONL and CSV
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
    with gr.Row():
        form.add("evaluation.benchmarks", choices=page.studio.benchmark_names(), scale=2)
        form.add("evaluation.num_fewshot", scale=1)
        form.add("evaluation.benchmark_limit", scale=1)
        form.add("evaluation.held_out", scale=1)
    with gr.Row():
        form.add("evaluation.task_metrics", choices=list(TASK_METRICS), scale=2)
        form.add("evaluation.metric_pattern", scale=1)
        form.add("evaluation.judge", scale=1)
        form.add("evaluation.judge_model", scale=1)
    with labels.add(gr.Accordion(T.judge_prompt_box("en"), open=False), T.judge_prompt_box):
        form.add("evaluation.judge_url")
        form.add("evaluation.judge_prompt", lines=8)
    start = labels.add(gr.Button(T.start_eval("en"), variant="primary", elem_id="qs-eval-start"), T.start_eval, "value")
    progress = gr.HTML(elem_id="qs-eval-progress")
    # hidden until there are results: an empty table would show made-up column headers
    metrics = labels.add(
        gr.Dataframe(label=T.metrics("en"), elem_id="qs-eval-metrics", interactive=False, visible=False), T.metrics
    )
    with gr.Row():
        order = labels.add(
            gr.Dropdown([], label=T.order_by("en"), elem_id="qs-eval-order", visible=False, scale=2),
            T.order_by,
        )
        downloads = labels.add(
            gr.File(
                label=T.downloads("en"), file_count="multiple", elem_id="qs-eval-downloads", visible=False, scale=1
            ),
            T.downloads,
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
    return EvalTab(
        picker, compare, start, progress, metrics, samples, order, downloads, gr.State(None), _score_box(page)
    )


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
        skip = (gr.skip(),) * 4
        if compare and not adapter:  # never score the base alone while the page promises a comparison
            yield _error(T.compare_needs_adapter(lang), lang), *skip, None
            return
        try:
            config = page.form.read(values)
        except Exception as error:
            yield _error(problem(error, lang, markdown=False), lang), *skip, None
            return
        work = lambda report: page.studio.evaluate(config, adapter, compare, progress=report)  # noqa: E731
        clock = _Clock()
        for kind, value in run_with_updates(work, tick_s=1.0):
            if kind in ("progress", "tick"):
                yield clock.show(value, lang), *skip, gr.skip()
            elif kind == "error":
                yield _error(problem(value, lang, markdown=False), lang), *skip, None
            else:
                yield *shown(value, lang), value

    inputs = {page.lang, tab.picker.dropdown, tab.compare} | page.form.inputs
    outputs = [tab.progress, tab.metrics, tab.samples, tab.order, tab.downloads, tab.report]
    tab.start.click(run, inputs, outputs, api_name="evaluate")
    _wire_score_box(page, tab)
    page.lang.change(  # the results in the page's language
        lambda report, metric, lng: shown(report, lng, metric) if report is not None else (gr.skip(),) * 5,
        [tab.report, tab.order, page.lang],
        [tab.progress, tab.metrics, tab.samples, tab.order, tab.downloads],
        api_visibility="private",
    )
    tab.order.change(  # the samples again, sorted by the change in the metric chosen
        lambda report, metric, lng: _samples_update(report, lng, metric) if report is not None else gr.skip(),
        [tab.report, tab.order, page.lang],
        tab.samples,
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


def shown(report, lang: str, metric: str | None = None) -> tuple:
    """The progress box, metrics table, samples table, sort choice and downloads of a finished evaluation."""
    choices = list(report.scores.get(report.columns[-1], {}))
    metric = metric if metric in choices else (choices[0] if choices else None)
    files = _downloadable(report)
    return (
        _finished(report, lang),
        gr.update(value=metrics_table(report, lang), visible=True),
        _samples_update(report, lang, metric),
        gr.update(choices=choices, value=metric, visible=bool(choices)),
        gr.update(value=files or None, visible=bool(files)),
    )


def _downloadable(report) -> list[str]:
    """Copies of the predictions files where Gradio serves files from (its temp dir), whatever the workspace is."""
    if not report.prediction_files:
        return []
    folder = Path(tempfile.mkdtemp(prefix="qlora-studio-predictions-"))
    return [str(shutil.copy(path, folder / path.name)) for path in report.prediction_files]


def _samples_update(report, lang: str, metric: str | None):
    samples = samples_table(report, lang, metric)
    scores = 0 if metric is None else len(report.columns) + (len(report.columns) == 2)
    return gr.update(value=samples, visible=True, column_widths=_widths(samples, scores))


def _widths(samples: pd.DataFrame, scores: int = 0) -> list[str] | None:
    """Prompt and reference a quarter each (a fifth beside scores), the predictions share what the `scores` trailing
    score columns (8% each) leave: every column readable, none cut off."""
    if len(samples.columns) < 3:
        return None
    predictions = len(samples.columns) - 2 - scores
    side = 20 if scores else 25
    left = 100 - 2 * side - 8 * scores
    return [f"{side}%", f"{side}%", *[f"{left / predictions:.0f}%"] * predictions, *["8%"] * scores]


def metrics_table(report, lang: str = "en") -> pd.DataFrame:
    columns = report.columns
    shown = {c: T.base(lang) if c == "base" else c for c in columns}
    rows = []
    for metric in report.metrics[columns[0]]:
        values = [report.metrics[c].get(metric) for c in columns]
        row = {T.col_metric(lang): metric, **{shown[c]: value for c, value in zip(columns, values)}}
        if len(columns) == 2:
            row[T.col_difference(lang)] = None if None in values else round(values[1] - values[0], 4)
        rows.append(row)
    return pd.DataFrame(rows)


def samples_table(report, lang: str = "en", metric: str | None = None) -> pd.DataFrame:
    """One row per sample; with `metric`, each column's score and the change, the worst change first."""
    rows = []
    if not report.samples and report.benchmarks is not None:  # benchmarks only: what each task scored
        return pd.DataFrame(
            [
                {
                    T.col_task(lang): task,
                    T.col_questions(lang): count,
                    T.col_fewshot(lang): report.benchmarks.fewshot.get(task),
                }
                for task, count in report.benchmarks.samples.items()
            ]
        )
    if not report.samples:  # plain text: scored for perplexity, nothing generated
        return pd.DataFrame([{T.col_text(lang): f"{report.scored} × {T.eval_kind_text(lang)}"}])
    for index, sample in enumerate(report.samples):
        row = {T.col_prompt(lang): sample.prompt[-1]["content"], T.col_reference(lang): sample.label}
        for c in report.columns:
            row[T.col_prediction(lang, column=T.base(lang) if c == "base" else c)] = report.predictions[c][index]
        if metric is not None:
            values = [report.scores.get(c, {}).get(metric, [None] * len(report.samples))[index] for c in report.columns]
            for c, value in zip(report.columns, values):
                row[f"{T.base(lang) if c == 'base' else c} · {metric}"] = value
            if len(values) == 2:
                row[T.col_change(lang)] = None if None in values else values[1] - values[0]
        if report.judge is not None:
            verdict = report.judge.verdicts[index]
            row[T.col_judge(lang)] = f"{named('judge', verdict.outcome, lang)} · {verdict.reason}"
        rows.append(row)
    table = pd.DataFrame(rows)
    if metric is not None:  # worst first: the samples the fine-tune broke, then those it never got right
        keys = [T.col_change(lang)] if len(report.columns) == 2 else []
        keys.append(f"{T.base(lang) if report.columns[-1] == 'base' else report.columns[-1]} · {metric}")
        table = table.sort_values(keys, kind="stable").reset_index(drop=True)
    return table


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
