"""Will it fit, how long: two lines above Start, redrawn whenever a field they depend on changes.

The fit line is the memory estimate of each device against what it has free now, with what to try when the
run falls short; the time line is the run's tokens over a rate measured on this machine (the last finished
run like it, or Measure speed: a few real steps, at most 30 s). Both come from the studio (Studio.fit,
Studio.time_estimate, Studio.measure_speed); this module only lays them out and says them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from app.feedback import problem
from app.i18n import Labels, T, Text
from app.page import Page
from studio.errors import StudioError

# the fields the estimates depend on: a change to any of them redraws both lines
WATCHED = [
    "model.name_or_path",
    "model.chat_template",
    "quantization.method",
    "quantization.cache_dequantized",
    "finetuning.method",
    "finetuning.freeze_trainable_layers",
    "lora.rank",
    "lora.target_modules",
    "data.dataset_dir",
    "data.datasets",
    "data.max_samples",
    "data.cutoff_len",
    "data.val_size",
    "training.stage",
    "training.devices",
    "training.batch_size",
    "training.gradient_accumulation_steps",
    "training.num_epochs",
    "training.max_steps",
    "training.eval_steps",
    "training.gradient_checkpointing",
    "training.packing",
    "training.micro_batch_tokens",
    "training.micro_batch_lanes",
    "training.precision",
    "training.pure_bf16",
    "optimizer.name",
    "distributed.strategy",
]


@dataclass
class FitLine:
    fit: gr.Markdown
    time: gr.Markdown
    measure: gr.Button


def layout(labels: Labels) -> FitLine:
    with gr.Row(equal_height=True):
        with gr.Column(scale=5):
            fit = gr.Markdown(elem_id="qs-fit")
            time = gr.Markdown(elem_id="qs-time")
        measure = labels.add(
            gr.Button(T.measure_speed("en"), size="sm", scale=1, elem_id="qs-measure-speed"), T.measure_speed, "value"
        )
    return FitLine(fit, time, measure)


def wire(page: Page, line: FitLine) -> None:
    form = page.form
    # every control the form makes (a textbox, number, dropdown or checkbox) has a change event
    triggers = [form.controls[path].component.change for path in WATCHED if path in form.controls]  # type: ignore[attr-defined]
    triggers.append(page.lang.change)
    root = gr.context.Context.root_block
    if root is not None:  # drawn for the form a page opens with, too
        triggers.append(root.load)
    gr.on(
        triggers,
        lambda values: _lines(page, values),
        {page.lang} | form.inputs,
        [line.fit, line.time],
        trigger_mode="always_last",
        show_progress="hidden",
        api_visibility="private",
    )
    line.measure.click(
        lambda values: (yield from _measure(page, values)),
        {page.lang} | form.inputs,
        line.time,
        api_name="measure_speed",
    )


def _lines(page: Page, values: dict) -> tuple[str, str]:
    lang = values[page.lang]
    try:
        config = page.form.read(values)
    except StudioError as error:  # a half-edited field: its problem, where Start would say it
        return problem(error, lang), ""
    fit = _line(T.fit_memory, lambda: page.studio.fit(config), lang)
    return fit, _line(T.fit_time, lambda: page.studio.time_estimate(config), lang)


def _line(title: Text, estimate: Callable[[], Any], lang: str) -> str:
    """`title: what the estimate says`, or what keeps it from being made (a field to fix, no rate yet)."""
    try:
        said = estimate().describe().text(lang)
    except StudioError as error:
        said = error.text(lang)
    return f"**{title(lang)}:** {said}"


def _measure(page: Page, values: dict):
    lang = values[page.lang]
    try:
        config = page.form.read(values)
    except StudioError as error:
        yield problem(error, lang)
        return
    yield f"**{T.fit_time(lang)}:** {T.measuring_speed(lang)}"
    try:
        said = page.studio.measure_speed(config).describe().text(lang)
    except Exception as error:  # DeviceBusy, a failed trial run: said where the time goes
        yield problem(error, lang)
        return
    yield f"**{T.fit_time(lang)}:** {said}"
