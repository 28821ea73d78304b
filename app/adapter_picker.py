"""An adapter dropdown with a refresh button, listing every finished run's adapter (Chat, Evaluate and Export)."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from app.i18n import Labels, T
from studio.api import Studio
from studio.locales import in_language


@dataclass
class AdapterPicker:
    dropdown: gr.Dropdown
    refresh: gr.Button


def layout(labels: Labels, elem_id: str) -> AdapterPicker:
    """Typing a folder path works too (custom values are allowed)."""
    with gr.Row(equal_height=True):
        dropdown = labels.add(
            gr.Dropdown(choices=[], label=T.adapter("en"), allow_custom_value=True, scale=4, elem_id=elem_id), T.adapter
        )
        refresh = labels.add(gr.Button(T.refresh("en"), size="sm", scale=1), T.refresh, "value")
    return AdapterPicker(dropdown, refresh)


def wire(studio: Studio, picker: AdapterPicker, lang: gr.State) -> None:
    picker.refresh.click(lambda lng: choices(studio, lng, warn=True), lang, picker.dropdown, api_visibility="private")


def choices(studio: Studio, lang: str = "en", warn: bool = False):
    scan = studio.adapters()
    if warn and scan.problems:  # a damaged adapter is left out of the list, and said so
        gr.Warning(f"{T.damaged_adapters(lang)}: " + " · ".join(in_language(p, lang) for p in scan.problems[:3]))
    return gr.update(choices=[(a.name, a.path) for a in scan.adapters])
