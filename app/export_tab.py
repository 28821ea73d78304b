"""The Export tab: merge an adapter into a standard model folder and show the reload check."""

from __future__ import annotations

import html

import gradio as gr

from app.adapter_picker import adapter_picker
from app.background import run_with_updates
from app.form import ConfigForm
from app.i18n import Labels, T
from studio.export.merge import export_merged
from studio.service import TrainingService


def build(service: TrainingService, form: ConfigForm, labels: Labels) -> gr.Dropdown:
    labels.add(gr.Markdown(T.export_note("en")), T.export_note, "value")
    adapter = adapter_picker(service, labels, "qs-export-adapter")
    with gr.Row():
        form.add("export", "output_dir", scale=3)
        form.add("export", "max_shard_size", scale=1)
        form.add("export", "dtype", scale=1)
        form.add("export", "check_prompts", scale=1)
    start = labels.add(gr.Button(T.export("en"), variant="primary", elem_id="qs-export-start"), T.export, "value")
    result = gr.HTML(elem_id="qs-export-result")

    def run(adapter_path, *values):
        if not adapter_path:
            yield _box("failed", "Choose an adapter (Refresh lists every finished run) or type its folder.")
            return
        try:
            config = form.read(*values)
        except Exception as error:
            yield _box("failed", str(error))
            return
        lines: list[str] = []
        for kind, value in run_with_updates(lambda report: export_merged(config, adapter_path, progress=report)):
            if kind == "progress":
                lines.append(value)
                yield _box("running", "\n".join(lines))
            elif kind == "error":
                yield _box("failed", "\n".join(lines + [str(value)]))
            else:
                check = f"reload check: max logit difference {value.max_logit_diff:.3g} ≤ tolerance {value.tolerance:g} ✓"
                yield _box("finished", "\n".join(lines + [f"Exported to {value.out_dir} ({value.dtype}, {value.seconds} s)", check, "Files: " + ", ".join(value.files)]))

    start.click(run, [adapter, *form.components], result)
    return adapter


def _box(state: str, text: str) -> str:
    return (
        f"<div class='qs-progress'><span class='qs-state qs-{state}'>{state}</span>"
        f"<pre style='white-space:pre-wrap;margin-top:.5rem'>{html.escape(text)}</pre></div>"
    )
