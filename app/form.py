"""Gradio controls generated from the typed config, and read back into it.

Each FieldControl knows its config path, its pydantic field and its component, so labels,
defaults, choices and help all come from studio.config; nothing here repeats them.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field

import gradio as gr
from pydantic.fields import FieldInfo

from studio.config import RunConfig
from studio.config.base import Section

Path = tuple[str, ...]


def _field_info(path: Path) -> FieldInfo:
    model: type[Section] = RunConfig
    for part in path[:-1]:
        model = model.model_fields[part].annotation
    return model.model_fields[path[-1]]


def _core_type(annotation):
    """(type without Optional, whether None is allowed)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0], True
    return annotation, False


def _english_label(path: Path) -> str:
    return path[-1].replace("_", " ").capitalize().replace("Lora", "LoRA").replace("Loraplus", "LoRA+")


@dataclass
class FieldControl:
    path: Path
    component: gr.components.Component
    info: FieldInfo = field(repr=False)

    def label(self, lang: str) -> str:
        return self.info.json_schema_extra["zh"] if lang == "zh" else _english_label(self.path)

    def relabel(self, lang: str):
        return gr.update(label=self.label(lang))

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
    """The controls of one page, in a fixed order that Gradio inputs and outputs follow."""

    def __init__(self, defaults: RunConfig | None = None):
        self.defaults = defaults or RunConfig()
        self.controls: list[FieldControl] = []

    def add(self, *path: str, lang: str = "en", **overrides) -> gr.components.Component:
        """Render the control for config field `path` here, in the current Blocks context."""
        info = _field_info(path)
        value = self._default(path)
        kwargs = {"label": _english_label(path) if lang != "zh" else info.json_schema_extra["zh"], "info": info.description}
        component = self._make(info, value, kwargs, overrides)
        control = FieldControl(path, component, info)
        self.controls.append(control)
        return component

    def _default(self, path: Path):
        value = self.defaults
        for part in path:
            value = getattr(value, part)
        return value

    def _make(self, info: FieldInfo, value, kwargs: dict, overrides: dict) -> gr.components.Component:
        kind, optional = _core_type(info.annotation)
        kwargs.update(overrides)
        if typing.get_origin(kind) is typing.Literal:
            return gr.Dropdown(choices=list(typing.get_args(kind)), value=value, **kwargs)
        if kind is bool:
            return gr.Checkbox(value=value, **kwargs)
        if kind in (int, float) and optional:
            # gr.Number sends 0 for an empty box; a textbox keeps "not set" distinct from 0
            return gr.Textbox(value="" if value is None else str(value), placeholder="empty = not set", **kwargs)
        if kind in (int, float):
            return gr.Number(value=value, precision=0 if kind is int else None, **kwargs)
        if typing.get_origin(kind) is list:
            if "choices" in kwargs:
                return gr.Dropdown(value=value, multiselect=True, allow_custom_value=True, **kwargs)
            return gr.Textbox(value=", ".join(value), **kwargs)
        if "choices" in kwargs:
            return gr.Dropdown(value=value, allow_custom_value=True, **kwargs)
        return gr.Textbox(value="" if value is None else value, **kwargs)

    @property
    def components(self) -> list[gr.components.Component]:
        return [c.component for c in self.controls]

    def read(self, *raw_values) -> RunConfig:
        """The RunConfig the controls describe; raises ConfigError naming each bad field."""
        values = self.defaults.model_dump(mode="json")
        for control, raw in zip(self.controls, raw_values):
            target = values
            for part in control.path[:-1]:
                target = target[part]
            target[control.path[-1]] = control.to_config_value(raw)
        return RunConfig.from_dict(values, source="the form")

    def values_of(self, config: RunConfig) -> list:
        values = []
        for control in self.controls:
            value = config
            for part in control.path:
                value = getattr(value, part)
            values.append(control.to_component_value(value))
        return values

    def relabel(self, lang: str) -> list:
        return [control.relabel(lang) for control in self.controls]
