"""An adapter dropdown with a refresh button, listing every finished run's adapter (Chat, Evaluate and Export); a
full or freeze run's whole model is listed too, said to be one beside its name."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from app.i18n import Labels, T
from studio.api import AdapterInfo, Studio
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


def wire(studio: Studio, picker: AdapterPicker, lang: gr.State, combinations: bool = False) -> None:
    picker.refresh.click(
        lambda lng: choices(studio, lng, warn=True, combinations=combinations),
        lang,
        picker.dropdown,
        api_visibility="private",
    )


def choices(
    studio: Studio, lang: str = "en", warn: bool = False, adapters_only: bool = False, combinations: bool = False
):
    """`adapters_only`: no whole models (lora.init_adapter continues an adapter; a whole model is none);
    `combinations`: the weighted combinations loaded in Chat too, by name (Chat and Export take them)."""
    scan = studio.adapters()
    if warn and scan.problems:  # a damaged adapter is left out of the list, and said so
        gr.Warning(f"{T.damaged_adapters(lang)}: " + " · ".join(in_language(p, lang) for p in scan.problems[:3]))
    listed = [a for a in scan.adapters if not (adapters_only and a.whole_model)]
    mixed = studio.combinations.items() if combinations else ()
    made = [(T.mix_choice(lang, name=name, recipe=mix.describe()), name) for name, mix in mixed]
    return gr.update(choices=[(label(a, lang), a.path) for a in listed] + made)


def label(info: AdapterInfo, lang: str) -> str:
    """An adapter by its name; a whole model by its name and method (full, freeze), so the two are told apart."""
    return T.whole_model_choice(lang, name=info.name, method=info.method) if info.whole_model else info.name
