"""The form is generated from the typed config and reads back into it."""

import gradio as gr
import pytest

from app.form import ConfigForm
from studio.config import ConfigError, RunConfig


def _form():
    form = ConfigForm()
    with gr.Blocks():
        for path in [("lora", "rank"), ("lora", "target_modules"), ("training", "max_steps"), ("quantization", "method"),
                     ("data", "system_prompt"), ("training", "load_best_at_end")]:
            form.add(*path)
    return form


def test_controls_follow_field_types_and_defaults():
    form = _form()
    kinds = [type(c.component).__name__ for c in form.controls]
    assert kinds == ["Number", "Textbox", "Textbox", "Dropdown", "Textbox", "Checkbox"]  # optional numbers: empty = None
    method = form.controls[3].component
    assert [c[0] for c in method.choices] == ["auto", "4bit", "none"] and method.value == "auto"
    assert form.controls[0].component.value == 8


def test_read_back_converts_values_and_validates():
    form = _form()
    config = form.read(16.0, "q_proj, v_proj", "", "4bit", "", False)
    assert config.lora.rank == 16 and config.lora.target_modules == ["q_proj", "v_proj"]
    assert config.training.max_steps is None and config.data.system_prompt is None
    assert form.values_of(config) == [16, "q_proj, v_proj", "", "4bit", "", False]
    assert form.read(8, "all", "250", "auto", "", True).training.max_steps == 250
    with pytest.raises(ConfigError, match="lora.rank"):
        form.read(0, "all", "", "auto", "", True)


def test_labels_switch_language():
    form = _form()
    assert form.controls[0].label("en") == "Rank" and form.controls[0].label("zh") == "LoRA 秩"
    assert RunConfig().lora.rank == form.controls[0].component.value
