"""Shared machinery of the config sections: field metadata, readable errors.

Every section is a pydantic model; a field's description is its help text and
`json_schema_extra` carries what a UI needs to build a control (Chinese label,
whether it belongs to the advanced accordion). Nothing else lists defaults.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from studio.errors import StudioError


def _booleans_as_on_off(value):
    """true/false (YAML, older configs) mean on/off."""
    return {True: "on", False: "off"}[value] if isinstance(value, bool) else value


# A three-way switch whose 'auto' the studio decides per machine; true/false are accepted as on/off.
AutoOnOff = Annotated[Literal["auto", "on", "off"], BeforeValidator(_booleans_as_on_off)]


class Section(BaseModel):
    """A config section: unknown keys are refused so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def field(default: Any, help: str, *, zh: str, zh_help: str, advanced: bool = False, **constraints: Any) -> Any:
    """A config field with help text (English and Chinese) and the metadata UIs render controls from."""
    return Field(
        default,
        description=help,
        json_schema_extra={"zh": zh, "zh_help": zh_help, "advanced": advanced},
        **constraints,
    )


class ConfigError(StudioError):
    """A config that cannot be used; the message names each bad field and what it accepts."""

    def __init__(self, problems: list[str], source: str | None = None):
        self.problems = problems
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"Invalid configuration{where}:\n{lines}")


def describe_validation_error(error: ValidationError, line_of: callable | None = None, prefix: str = "") -> list[str]:
    """One line per problem: dotted field path, optional YAML line, pydantic's reason, the bad value."""
    problems = []
    for item in error.errors():
        loc = tuple(str(part) for part in item["loc"])
        path = prefix + ".".join(loc)
        line = line_of(loc) if line_of else None
        where = f" (line {line})" if line else ""
        message = item["msg"].removeprefix("Value error, ")  # a validator's own sentence needs no prefix
        if item["type"] == "extra_forbidden":
            message = "unknown field; check the spelling against `qlora-studio train --help`"
        elif "input" in item and not isinstance(item["input"], (dict, list)):
            message += f" (got {item['input']!r})"
        problems.append(f"{path}{where}: {message}")
    return problems


def clean_names(names: list[str], empty_message: str) -> list[str]:
    """Strip blanks from a list of names typed by a person; refuse a list left empty."""
    cleaned = [name.strip() for name in names if name.strip()]
    if not cleaned:
        raise ValueError(empty_message)
    return cleaned
