"""The form is generated from the typed config, bound by field path, and reads back into it."""

import gradio as gr
import pytest

from app.form import ConfigForm
from studio.config import ConfigError, RunConfig

PATHS = [
    "lora.rank",
    "lora.target_modules",
    "training.max_steps",
    "quantization.method",
    "data.system_prompt",
    "training.load_best_at_end",
]


def _form():
    form = ConfigForm()
    with gr.Blocks():
        for path in PATHS:
            form.add(path)
    form.seal()
    return form


def _values(form, *raw):
    return {form.controls[path].component: value for path, value in zip(PATHS, raw)}


def test_controls_follow_field_types_and_defaults():
    form = _form()
    kinds = [type(form.controls[p].component).__name__ for p in PATHS]
    assert kinds == [
        "Number",
        "Textbox",
        "Textbox",
        "Dropdown",
        "Textbox",
        "Checkbox",
    ]  # optional numbers: empty = None
    method = form.controls["quantization.method"].component
    assert [c[0] for c in method.choices] == ["auto", "4bit", "8bit", "none"] and method.value == "auto"
    assert form.controls["lora.rank"].component.value == 8


def test_read_back_by_name_converts_values_and_validates():
    form = _form()
    values = _values(form, 16.0, "q_proj, v_proj", "", "4bit", "", False)
    config = form.read(dict(reversed(list(values.items()))))  # order does not matter, names do
    assert config.lora.rank == 16 and config.lora.target_modules == ["q_proj", "v_proj"]
    assert config.training.max_steps is None and config.data.system_prompt is None
    assert form.values_of(config) == values
    assert form.read(_values(form, 8, "all", "250", "auto", "", True)).training.max_steps == 250
    with pytest.raises(ConfigError, match="lora.rank"):
        form.read(_values(form, 0, "all", "", "auto", "", True))


def test_a_missing_field_is_an_error_not_a_default():
    form = _form()
    values = _values(form, 16, "all", "", "auto", "", True)
    del values[form.controls["lora.rank"].component]
    with pytest.raises(KeyError):
        form.read(values)


def test_wiring_before_the_layout_is_complete_fails_at_build_time():
    form = ConfigForm()
    with gr.Blocks():
        form.add("lora.rank")
        with pytest.raises(ValueError, match="already"):
            form.add("lora.rank")
        with pytest.raises(RuntimeError, match="seal"):
            _ = form.inputs
        form.seal()
        with pytest.raises(RuntimeError, match="sealed"):
            form.add("lora.alpha")


def test_labels_switch_language():
    form = _form()
    control = form.controls["lora.rank"]
    assert control.label("en") == "Rank" and control.label("zh") == "LoRA 秩"
    assert RunConfig().lora.rank == control.component.value
