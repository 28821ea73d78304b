"""Gradio controls generated from the typed config, bound to their field paths, read back into it.

Each control knows its path ("training.learning_rate"), its pydantic field and its component, so
defaults and choices come from studio.config, labels and help from the translation table (studio/locales/
fields.yaml; the English ones are the field's name and description); nothing here repeats them.
Handlers receive the form as Gradio's dict input ({component: value}) and `read` picks each
value by its control, never by position. The form is sealed once the whole page is laid out:
wiring an event before then (and so missing controls added later) is an error at build time.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field

import gradio as gr
from pydantic.fields import FieldInfo

from studio.config import RunConfig
from studio.config.base import Section
from studio.locales import template


def field_info(path: str) -> FieldInfo:
    model: type[Section] = RunConfig
    *sections, name = path.split(".")
    for part in sections:
        model = model.model_fields[part].annotation
    return model.model_fields[name]


def _core_type(annotation):
    """(type without Optional, whether None is allowed)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0], True
    return annotation, False


# names written as their owners write them, wherever a field's name starts with one
_NAMES = {"Lora": "LoRA", "Loraplus": "LoRA+", "Mlflow": "MLflow", "Wandb": "W&B", "Swanlab": "SwanLab", " uri": " URI"}


def english_label(path: str) -> str:
    label = path.rsplit(".", 1)[-1].replace("_", " ").capitalize()
    for written, name in _NAMES.items():
        label = label.replace(written, name)
    return label


def element_id(path: str) -> str:
    """The DOM id of a field's control: scripts and browser tests find a field by its path."""
    return "qs-field-" + path.replace(".", "-")


@dataclass
class FieldControl:
    path: str
    component: gr.components.Component
    info: FieldInfo = field(repr=False)

    def label(self, lang: str) -> str:
        return template(self.path, lang, english_label(self.path))

    def help(self, lang: str) -> str:
        return template(f"{self.path}.help", lang, self.info.description)

    def to_config_value(self, raw):
        kind, optional = _core_type(self.info.annotation)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            if typing.get_origin(kind) is list:
                return []
            return None if optional else raw
        if kind is int and isinstance(raw, float) and raw.is_integer():
            return int(raw)
        if typing.get_origin(kind) is list and isinstance(raw, str):
            return [part.strip() for part in raw.split(",") if part.strip()]
        return raw

    def to_component_value(self, value):
        kind, _ = _core_type(self.info.annotation)
        if typing.get_origin(kind) is list and not isinstance(self.component, gr.Dropdown):
            return ", ".join(value)
        if isinstance(self.component, gr.Textbox):
            return "" if value is None else str(value)
        return value


class ConfigForm:
    """The config controls of one page, by field path."""

    def __init__(self, defaults: RunConfig | None = None):
        self.defaults = defaults or RunConfig()
        self.controls: dict[str, FieldControl] = {}
        self._sealed = False

    def add(self, path: str, **overrides) -> gr.components.Component:
        """Render the control for config field `path` (e.g. "lora.rank") here, in the current Blocks context."""
        if self._sealed:
            raise RuntimeError(f"{path}: the form is sealed; add every control before wiring events.")
        if path in self.controls:
            raise ValueError(f"{path} is already on this page; a field has one control.")
        info = field_info(path)
        kwargs = {"label": english_label(path), "info": info.description, "elem_id": element_id(path), **overrides}
        control = FieldControl(path, _make(info, self.default(path), kwargs), info)
        self.controls[path] = control
        return control.component

    def seal(self) -> None:
        """The layout is complete: from now on events may be wired, and no control is added."""
        self._sealed = True

    @property
    def inputs(self) -> set[gr.components.Component]:
        if not self._sealed:
            raise RuntimeError("Wire events after the whole page is laid out (form.seal()), so no control is missed.")
        return {control.component for control in self.controls.values()}

    @property
    def outputs(self) -> list[gr.components.Component]:
        """Every control, for an event that fills the whole form (answer with `values_of`)."""
        if not self._sealed:
            raise RuntimeError("Wire events after the whole page is laid out (form.seal()), so no control is missed.")
        return [control.component for control in self.controls.values()]

    def default(self, path: str):
        value = self.defaults
        for part in path.split("."):
            value = getattr(value, part)
        return value

    def read(self, values: dict) -> RunConfig:
        """The RunConfig the controls describe; raises ConfigError naming each bad field."""
        config = self.defaults.model_dump(mode="json")
        for control in self.controls.values():
            *sections, name = control.path.split(".")
            target = config
            for part in sections:
                target = target[part]
            target[name] = control.to_config_value(values[control.component])
        return RunConfig.from_dict(config, source="the form")

    def values_of(self, config: RunConfig) -> dict:
        """{component: value} that shows `config` in the controls."""
        values = {}
        for control in self.controls.values():
            value = config
            for part in control.path.split("."):
                value = getattr(value, part)
            values[control.component] = control.to_component_value(value)
        return values

    def relabel(self, lang: str) -> dict:
        return {c.component: gr.update(label=c.label(lang), info=c.help(lang)) for c in self.controls.values()}


def _make(info: FieldInfo, value, kwargs: dict) -> gr.components.Component:
    kind, optional = _core_type(info.annotation)
    if typing.get_origin(kind) is typing.Literal:
        return gr.Dropdown(choices=list(typing.get_args(kind)), value=value, **kwargs)
    if kind is bool:
        return gr.Checkbox(value=value, **kwargs)
    if kind in (int, float) and optional:
        # gr.Number sends 0 for an empty box; a textbox keeps "not set" distinct from 0
        return gr.Textbox(value="" if value is None else str(value), **kwargs)
    if kind in (int, float):
        return gr.Number(value=value, precision=0 if kind is int else None, **kwargs)
    if typing.get_origin(kind) is list:
        if "choices" in kwargs:
            return gr.Dropdown(value=value, multiselect=True, allow_custom_value=True, **kwargs)
        return gr.Textbox(value=", ".join(value), **kwargs)
    if "choices" in kwargs:
        return gr.Dropdown(value=value, allow_custom_value=True, **kwargs)
    return gr.Textbox(value="" if value is None else value, **kwargs)
