"""The dataset preview as the Train tab shows it: a summary line per dataset, first rows, token lengths, and the
pictures of a dataset of pictures as thumbnails beside their rows' text."""

from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from app.i18n import T, named
from studio.api import thumbnail_uri
from studio.locales import in_language
from studio.runs.text import format_duration

# what the preview reports doing (PreviewProgress.stage: studio.data.preview's and studio.api's own "tokenizer")
STAGES = {"tokenizer": T.preview_tokenizer, "reading": T.preview_reading, "tokenizing": T.preview_tokenizing}


@dataclass
class PreviewBox:
    column: gr.Column
    summary: gr.Markdown
    table: gr.Dataframe
    histogram: gr.Plot
    pictures: gr.HTML

    @property
    def outputs(self) -> list:
        return [self.column, self.summary, self.table, self.histogram, self.pictures]


def layout() -> PreviewBox:
    with gr.Column(visible=False, elem_id="qs-preview") as column:
        summary = gr.Markdown()
        with gr.Row():
            table = gr.Dataframe(wrap=True, max_height=320, scale=3, elem_id="qs-preview-table", visible=False)
            histogram = gr.Plot(scale=2, show_label=False, visible=False)
        pictures = gr.HTML(visible=False, elem_id="qs-preview-pictures", css_template=PICTURES_CSS)
    return PreviewBox(column, summary, table, histogram, pictures)


PICTURES_CSS = """
.qs-picture-row { display: flex; gap: 12px; align-items: flex-start; padding: 6px 0;
  border-bottom: 1px solid var(--border-color-primary); }
.qs-thumbs { display: flex; gap: 4px; flex: 0 0 auto; }
.qs-thumbs img { border: 1px solid var(--border-color-primary); border-radius: 4px; }
.qs-picture-text { font-size: var(--text-sm); overflow-wrap: anywhere; }
"""
THUMBNAILS_PER_ROW = 8


def pictures_update(result) -> dict:
    """The rows that show pictures, each as its thumbnails beside its text; hidden when no row shows any."""
    markup = pictures_html(result)
    return gr.update(value=markup, visible=bool(markup))


def pictures_html(result) -> str:
    """Thumbnails as data: URIs of small copies made here (no file of the workspace is served), every text
    escaped; a picture that cannot be read shows as its name."""
    rows = []
    for dataset in result.datasets:
        for number, (row, pictures) in enumerate(zip(dataset.rows, dataset.pictures), start=1):
            if not pictures:
                continue
            thumbs = "".join(_thumbnail(path) for path in pictures[:THUMBNAILS_PER_ROW])
            label = f"<b>{html.escape(dataset.name)}</b> #{number}"
            text = html.escape(_row_text(row, dataset.picture_column))
            rows.append(
                f'<div class="qs-picture-row"><div class="qs-thumbs">{thumbs}</div>'
                f'<div class="qs-picture-text">{label}<br>{text}</div></div>'
            )
    return f'<div class="qs-preview-pictures">{"".join(rows)}</div>' if rows else ""


def _thumbnail(path: str) -> str:
    name = html.escape(Path(path).name, quote=True)
    try:
        uri = thumbnail_uri(path)
    except Exception:  # damaged since it was read, or not a picture: the row still shows
        return f'<span class="qs-thumb-missing" title="{name}">⚠ {name}</span>'
    return f'<img src="{uri}" alt="{name}" title="{name}">'


def _row_text(row: dict, picture_column: str | None, limit: int = 300) -> str:
    """A row's words: its text values, and the contents of its messages, in order (the pictures' paths, under the
    dataset's own name for its picture column, left out). A lone message is a pair's answer (sharegpt and openai
    pairs keep chosen and rejected as one message each): named by its key, so the two answers tell apart."""
    parts = []
    for key, value in row.items():
        if key == picture_column:
            continue
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, list):
            parts += [_message_text(item) for item in value if isinstance(item, dict)]
        elif isinstance(value, dict):
            parts.append(f"{key}: {_message_text(value)}")
    text = " / ".join(part for part in parts if part.strip())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _message_text(message: dict) -> str:
    content = message.get("content", message.get("value", ""))
    return content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)


def table_update(result) -> dict:
    """The rows, each column as wide as its share of the box (a pair's chosen and rejected side by side, wrapped,
    never beyond the right edge), the dataset's name narrow."""
    frame = table(result)
    text_columns = max(1, len(frame.columns) - 1)
    widths = ["12%", *[f"{88 / text_columns:.0f}%"] * text_columns] if len(frame.columns) > 1 else None
    return gr.update(value=frame, visible=True, column_widths=widths)


def table(result) -> pd.DataFrame:
    records = []
    for dataset in result.datasets:
        for row in dataset.rows:
            records.append({"dataset": dataset.name, **{k: _cell(v) for k, v in row.items()}})
    frame = pd.DataFrame.from_records(records).fillna("")
    empty = [c for c in frame.columns if not frame[c].astype(str).str.strip().any()]
    return frame.drop(columns=empty)  # e.g. alpaca's usually blank 'input'


def _cell(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 300 else text[:297] + "..."


def summary(result, note, lang: str) -> str:
    lines = []
    for d in result.datasets:
        kind = named("kind", d.kind, lang)
        line = f"**{d.name}** — {d.num_usable} / {d.num_rows} {T.rows(lang)} ({kind}, {d.formatting}, `{d.file}`)"
        if d.tokens:
            t = d.tokens
            line += "; " + T.preview_tokens(lang, median=t.median, p95=t.p95, max=t.max, over=t.truncated)
        if d.parts:  # a pair: its prompt and its two answers apart
            line += " (" + T.preview_parts(lang, **{name: f"{p.median:.0f}" for name, p in d.parts.items()}) + ")"
        if d.skipped:
            skipped = (f"{n} {in_language(reason, lang)}" for reason, n in d.skipped.items())
            line += f"; {T.preview_skipped(lang)}: " + ", ".join(skipped)
        lines.append(f"- {line}")
        if d.stage_problem:  # said now, not first at Start
            lines.append(f"    - ⚠️ **{T.preview_stage_problem(lang)}:** {in_language(d.stage_problem, lang)}")
        for row in d.skipped_rows:
            lines.append(
                f"    - {T.preview_skipped(lang)} {in_language(row.where, lang)}: {in_language(row.reason, lang)}"
            )
    if note:
        lines.append(f"\n_{in_language(note, lang)}_")
    return "\n".join(lines)


class Clock:
    """What the preview is doing while it works: stage, dataset, count, and time that keeps moving."""

    def __init__(self):
        self.report, self.started, self.stage_started = None, time.time(), time.time()

    def show(self, report, lang: str) -> str:
        if report is not None:
            if self.report is None or (report.stage, report.dataset) != (self.report.stage, self.report.dataset):
                self.stage_started = time.time()
            self.report = report
        elapsed = format_duration(time.time() - self.started)
        if self.report is None:
            return f"_{T.loading(lang)} · {T.elapsed(lang)} {elapsed}_"
        stage = STAGES[self.report.stage](lang) if self.report.stage in STAGES else self.report.stage
        count = f" {self.report.done}/{self.report.total}" if self.report.total else ""
        return f"_{stage} **{self.report.dataset}**{count} · {T.elapsed(lang)} {elapsed}{self._eta(lang)}_"

    def _eta(self, lang: str) -> str:
        report, spent = self.report, time.time() - self.stage_started
        if not (report.total and report.done):
            return ""
        remaining = spent / report.done * (report.total - report.done)
        return f" · {T.eta(lang)} {format_duration(remaining)}"


def all_lengths(result) -> list[int]:
    return [n for d in result.datasets if d.tokens for n in d.tokens.lengths]
