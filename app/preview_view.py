"""The dataset preview as the Train tab shows it: a summary line per dataset, first rows, token lengths."""

from __future__ import annotations

import json
from dataclasses import dataclass

import gradio as gr
import pandas as pd

from app.i18n import T


@dataclass
class PreviewBox:
    column: gr.Column
    summary: gr.Markdown
    table: gr.Dataframe
    histogram: gr.Plot

    @property
    def outputs(self) -> list:
        return [self.column, self.summary, self.table, self.histogram]


def layout() -> PreviewBox:
    with gr.Column(visible=False, elem_id="qs-preview") as column:
        summary = gr.Markdown()
        with gr.Row():
            table = gr.Dataframe(wrap=True, max_height=320, scale=3, elem_id="qs-preview-table")
            histogram = gr.Plot(scale=2, show_label=False)
    return PreviewBox(column, summary, table, histogram)


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


def summary(result, note: str | None, lang: str) -> str:
    lines = []
    for d in result.datasets:
        line = f"**{d.name}** — {d.num_usable} / {d.num_rows} {T.rows(lang)} ({d.formatting}, `{d.file}`)"
        if d.tokens:
            t = d.tokens
            line += f"; tokens: median {t.median:.0f}, p95 {t.p95}, max {t.max}; {t.truncated} > cutoff_len"
        if d.skipped:
            line += "; skipped: " + ", ".join(f"{n} {reason}" for reason, n in d.skipped.items())
        lines.append(f"- {line}")
    if note:
        lines.append(f"\n_{note}_")
    return "\n".join(lines)


def all_lengths(result) -> list[int]:
    return [n for d in result.datasets if d.tokens for n in d.tokens.lengths]
