"""A model or a training stage picked in the page brings its recipe (studio.config.recipes) into the form.

Field by field: a value that still shows the recipe in force before the change is replaced; a value
the user changed from it stays theirs, and the note under the top bar says which were kept. Datasets
the new stage cannot train on are replaced by the recipe's, said so, since Start would refuse them.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from app.feedback import said
from app.i18n import T
from app.page import Page
from studio.config import RunConfig
from studio.config.recipes import RECIPE_SECTIONS, Recipe, recipe_for, with_recipe
from studio.errors import StudioError
from studio.locales import in_language

MODEL, STAGE, DATASETS, DATASET_DIR = "model.name_or_path", "training.stage", "data.datasets", "data.dataset_dir"


@dataclass
class RecipeFill:
    note: gr.Markdown
    in_force: gr.State  # {field path: control value} of the recipe the untouched fields show
    said: gr.State  # the note in every language, for a language switch


def layout() -> RecipeFill:
    return RecipeFill(gr.Markdown(elem_id="qs-recipe-note"), gr.State(None), gr.State(None))


def wire(page: Page, fill: RecipeFill) -> None:
    form = page.form
    inputs = {page.lang, fill.in_force} | form.inputs
    outputs = [fill.note, fill.said, fill.in_force, *form.outputs]
    form.controls[MODEL].component.input(
        lambda values: _fill(page, fill, values, "model"), inputs, outputs, api_visibility="private"
    )
    form.controls[STAGE].component.input(
        lambda values: _fill(page, fill, values, "stage"), inputs, outputs, api_visibility="private"
    )
    page.lang.change(
        lambda said, lng: said[lng] if said else gr.skip(), [fill.said, page.lang], fill.note, api_visibility="private"
    )


def _fill(page: Page, fill: RecipeFill, values: dict, changed: str) -> dict:
    """`changed` ("model" or "stage") was picked: its recipe, over the fields the user has not changed."""
    form, lang = page.form, values[page.lang]
    model, stage = values[form.controls[MODEL].component], values[form.controls[STAGE].component]
    # a stage picked for a model of no known family takes LLaMA-Factory's own example values
    recipe = recipe_for(model, stage, any_model=changed == "stage")
    if recipe is None:
        return {fill.note: "", fill.said: None}
    new = _recipe_values(page, with_recipe(_current(page, values, model), recipe))
    # until a first fill, the form's defaults are the recipe in force
    in_force, kept, updates = values[fill.in_force] or _recipe_values(page, form.defaults), [], {}
    for path, value in new.items():
        component = form.controls[path].component
        if path == STAGE or _same(values[component], value):
            continue
        if _same(values[component], in_force.get(path)):  # still the old recipe's: the new one's replaces it
            updates[component] = value
        else:
            kept.append(path)
    datasets, replaced = form.controls[DATASETS].component, None
    if datasets not in updates and not _fit(page, values, stage):
        updates[datasets] = new[DATASETS]
        kept = [path for path in kept if path != DATASETS]
        replaced = {"stage": stage, "datasets": ", ".join(new[DATASETS])}
    note, every_language = said(lambda code: _note(recipe, kept, replaced, code), lang)
    return {fill.note: note, fill.said: every_language, fill.in_force: new, **updates}


def _recipe_values(page: Page, config: RunConfig) -> dict:
    """{path: control value} of the recipe sections' fields on the page."""
    values = page.form.values_of(config)
    return {p: values[c.component] for p, c in page.form.controls.items() if p.split(".")[0] in RECIPE_SECTIONS}


def _current(page: Page, values: dict, model: str) -> RunConfig:
    try:
        return page.form.read(values)
    except StudioError:  # a half-edited form: the recipe starts from the defaults instead
        defaults = page.form.defaults
        return defaults.model_copy(update={"model": defaults.model.model_copy(update={"name_or_path": model})})


def _fit(page: Page, values: dict, stage: str) -> bool:
    """Whether every chosen dataset holds the data `stage` trains on (as far as its registry entry says)."""
    form = page.form
    stages = page.studio.dataset_stages(values[form.controls[DATASET_DIR].component])
    return all(stages.get(name, stage) == stage for name in values[form.controls[DATASETS].component] or [])


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return a == b


def _note(recipe: Recipe, kept: list[str], replaced: dict | None, lang: str) -> str:
    note = f"{T.recipe_filled(lang)} {in_language(recipe.summary, lang)} (`examples/{recipe.file.name}`)."
    if kept:
        note += " " + T.recipe_kept(lang, fields=", ".join(f"`{path}`" for path in kept))
    if replaced:
        note += " " + T.recipe_datasets_replaced(lang, **replaced)
    return note
