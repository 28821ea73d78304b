"""A stage or model picked in the page brings its recipe, and never overwrites what the user typed."""

import pytest

from app import recipe_fill
from app.server import build_page
from studio.api import Studio
from studio.config import EMBEDDED_MODEL, RunConfig
from studio.config.recipes import with_recipe


@pytest.fixture(scope="module")
def built():
    page = build_page(Studio("runs"), with_recipe(RunConfig()))
    return page, page.page.form


def _values(built, config=None, **typed):
    """What the browser sends for the form showing `config` (default: the page's defaults), `typed` by path."""
    page, form = built
    values = form.values_of(config or form.defaults)
    values.update({form.controls[path].component: value for path, value in typed.items()})
    return {page.page.lang: "en", page.recipes.in_force: None, **values}


def _fill(built, values, changed="stage"):
    page, _ = built
    return recipe_fill._fill(page.page, page.recipes, values, changed)


def _by_path(built, answer):
    form = built[1]
    return {path: answer[c.component] for path, c in form.controls.items() if c.component in answer}


def test_choosing_dpo_brings_its_recipe_and_says_so(built):
    answer = _fill(built, _values(built, **{"training.stage": "dpo"}))
    changed = _by_path(built, answer)
    assert changed["training.learning_rate"] == pytest.approx(2e-4) and changed["preference.ftx"] == 1.0
    assert changed["data.datasets"] == ["dpo_zh_demo"]
    note = next(v for v in answer.values() if isinstance(v, str) and "dpo-demo.yaml" in v)
    assert "Kept" not in note


def test_a_value_the_user_typed_stays_and_is_named(built):
    answer = _fill(built, _values(built, **{"training.stage": "dpo", "training.learning_rate": 5e-5}))
    changed = _by_path(built, answer)
    assert "training.learning_rate" not in changed and changed["preference.ftx"] == 1.0
    note = next(v for v in answer.values() if isinstance(v, str) and "dpo-demo.yaml" in v)
    assert "Kept the values you changed: `training.learning_rate`" in note


def test_datasets_the_new_stage_cannot_train_on_are_replaced(built):
    typed = {"training.stage": "kto", "data.datasets": ["dpo_zh_demo"]}  # pairs: not KTO's data
    answer = _fill(built, _values(built, **typed))
    assert _by_path(built, answer)["data.datasets"] == ["kto_zh_demo"]
    assert any(isinstance(v, str) and "cannot train stage kto" in v for v in answer.values())


def test_back_to_sft_restores_the_sft_recipe_from_the_one_in_force(built):
    dpo = with_recipe(RunConfig().with_overrides({"training.stage": "dpo"}))
    values = _values(built, dpo, **{"training.stage": "sft"})
    values[built[0].recipes.in_force] = recipe_fill._recipe_values(built[0].page, dpo)  # the DPO recipe is in force
    changed = _by_path(built, _fill(built, values))
    assert changed["training.learning_rate"] == pytest.approx(1e-3) and changed["preference.ftx"] == 0.0
    assert changed["data.datasets"] == ["alpaca_zh_demo", "identity"]


def test_a_stage_for_an_unknown_model_takes_llama_factorys_values(built):
    values = _values(built, **{"model.name_or_path": "someone/own-model", "training.stage": "dpo"})
    changed = _by_path(built, _fill(built, values))
    assert changed["training.learning_rate"] == pytest.approx(5e-6) and "model.name_or_path" not in changed
    assert _fill(built, _values(built, **{"model.name_or_path": "someone/own-model"}), "model")  # nothing to fill
    assert EMBEDDED_MODEL == built[1].defaults.model.name_or_path
