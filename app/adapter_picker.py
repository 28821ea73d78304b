"""An adapter dropdown with a refresh button, listing every finished run's adapter (shared by three tabs)."""

from __future__ import annotations

import gradio as gr

from app.i18n import Labels, T
from studio.chat import AdapterError, find_adapters
from studio.service import TrainingService


def adapter_choices(service: TrainingService):
    try:
        return gr.update(choices=[(a.name, a.path) for a in find_adapters(service.runs_dir)])
    except AdapterError as error:
        gr.Warning(str(error))
        return gr.update()


def adapter_picker(service: TrainingService, labels: Labels, elem_id: str) -> gr.Dropdown:
    """Typing a folder path works too (custom values are allowed)."""
    with gr.Row(equal_height=True):
        dropdown = labels.add(
            gr.Dropdown(choices=[], label=T.adapter("en"), allow_custom_value=True, scale=4, elem_id=elem_id), T.adapter
        )
        refresh = labels.add(gr.Button(T.refresh("en"), size="sm", scale=1), T.refresh, "value")
    refresh.click(lambda: adapter_choices(service), None, dropdown)
    return dropdown
