"""Weighted combinations of LoRA adapters on the page: Chat's "Combine adapters" (loaded adapters by name, the result
one more adapter to chat with) and Export's recipe (adapter folders, merged instead of one adapter)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import gradio as gr

from app import adapter_picker
from app.feedback import failure, said
from app.i18n import Labels, T, Text
from app.page import Page
from studio.api import COMBINATION_TYPES, WITH_DENSITY
from studio.errors import StudioError
from studio.locales import in_language, say


@dataclass
class AdapterMix:
    adapters: gr.Dropdown  # several: loaded adapters' names (Chat) or adapter folders (Export)
    weights: gr.Textbox
    kind: gr.Dropdown
    density: gr.Number
    name: gr.Textbox | None  # Chat names what it loads; Export merges
    combine: gr.Button | None


def layout(labels: Labels, prefix: str, note: Text, chat: bool) -> AdapterMix:
    with labels.add(gr.Accordion(T.mix_title("en"), open=False, elem_id=f"{prefix}-mix"), T.mix_title):
        labels.add(gr.Markdown(note("en")), note, "value")
        with gr.Row():
            adapters = labels.add(
                gr.Dropdown(
                    choices=[], multiselect=True, label=T.mix_adapters("en"), scale=3, elem_id=f"{prefix}-mix-adapters"
                ),
                T.mix_adapters,
            )
            weights = labels.add(
                gr.Textbox(label=T.mix_weights("en"), scale=2, elem_id=f"{prefix}-mix-weights"), T.mix_weights
            )
        with gr.Row(equal_height=True):
            kind = labels.add(gr.Dropdown(list(COMBINATION_TYPES), value="linear", label=T.mix_type("en")), T.mix_type)
            density = labels.add(gr.Number(0.5, label=T.mix_density("en"), minimum=0, maximum=1), T.mix_density)
            name = combine = None
            if chat:
                name = labels.add(gr.Textbox("mix", label=T.mix_name("en"), elem_id=f"{prefix}-mix-name"), T.mix_name)
                combine = labels.add(
                    gr.Button(T.mix_combine("en"), elem_id=f"{prefix}-mix-combine"), T.mix_combine, "value"
                )
    return AdapterMix(adapters, weights, kind, density, name, combine)


def weights_of(text: str | None, count: int) -> list[float]:
    """ "0.5, 0.5" as numbers; nothing typed: equal weights summing to one."""
    if not text or not text.strip():
        return [1 / count] * count if count else []
    try:
        return [float(part) for part in text.replace(";", ",").split(",") if part.strip()]
    except ValueError:
        raise StudioError("combine.weights_unreadable", weights=text) from None


def _density(kind: str, density: float | None) -> float | None:
    return density if kind in WITH_DENSITY else None


def loaded_choices(page: Page):
    """The loaded LoRA adapters Chat can combine (whole models and OFT adapters cannot be)."""
    engine = page.studio.engine
    return gr.update(choices=[name for name, info in engine.adapters.items() if info.method == "lora"])


def wire_chat(page: Page, mix: AdapterMix, picker: adapter_picker.AdapterPicker, status: list) -> None:
    """Combine → the combination loaded, said in the status line, and chosen as the adapter pane's adapter."""
    assert mix.combine is not None and mix.name is not None
    inputs = [mix.adapters, mix.weights, mix.kind, mix.density, mix.name, page.lang]
    mix.combine.click(
        lambda *values: _combine(page, *values), inputs, [*status, picker.dropdown, mix.adapters], api_name="combine"
    )


def _combine(page: Page, names, weights, kind, density, name, lang):
    names = list(names or [])
    try:
        every = weights_of(weights, len(names))
        if len(every) != len(names):
            raise StudioError("combine.needs_two")
        mixed = dict(zip(names, every, strict=True))
        info = page.studio.combine_adapters(name or "", mixed, kind, _density(kind, density))
    except Exception as error:
        return *said(failure(error), lang), gr.skip(), gr.skip()
    recipe = page.studio.engine.combinations[info.name].describe()
    shown = said(partial(in_language, say("combine.made", name=f"**{info.name}**", recipe=recipe)), lang)
    choices = adapter_picker.choices(page.studio, lang, combinations=True)
    return *shown, {**choices, "value": info.name}, loaded_choices(page)


def wire_export(page: Page, mix: AdapterMix) -> None:
    """Export's recipe lists the finished runs' adapters when opened."""
    mix.adapters.focus(
        lambda lng: adapter_picker.choices(page.studio, lng, adapters_only=True),
        page.lang,
        mix.adapters,
        api_visibility="private",
        queue=False,
    )


def export_combination(page: Page, folders, weights, kind, density):
    """The recipe to merge, or None when no adapters are picked (then the adapter above is exported)."""
    folders = list(folders or [])
    if not folders:
        return None
    every = weights_of(weights, len(folders))
    if len(every) != len(folders):
        raise StudioError("combine.needs_two")
    return page.studio.combination(list(zip(folders, every, strict=True)), kind, _density(kind, density))
