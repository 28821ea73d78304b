"""Shared machinery of the config sections: field metadata, readable errors.

Every section is a pydantic model; a field's description is its (English) help text and
`json_schema_extra` carries what a UI needs to build a control (whether it belongs to the advanced
accordion). Its label and help in other languages are in the translation table (studio/locales/fields.yaml,
keyed by the field's dotted path). Nothing else lists defaults.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from studio.errors import StudioError
from studio.locales import Joined, Message, say


def _booleans_as_on_off(value: object) -> object:
    """true/false (YAML, older configs) mean on/off."""
    return {True: "on", False: "off"}[value] if isinstance(value, bool) else value


# A three-way switch whose 'auto' the studio decides per machine; true/false are accepted as on/off.
AutoOnOff = Annotated[Literal["auto", "on", "off"], BeforeValidator(_booleans_as_on_off)]


class Section(BaseModel):
    """A config section: unknown keys are refused so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def field(default: Any, help: str, *, advanced: bool = False, **constraints: Any) -> Any:
    """A config field with its English help text and the metadata UIs render controls from."""
    return Field(default, description=help, json_schema_extra={"advanced": advanced}, **constraints)


# Sources the callers name in English (the page, the CLI); a file's path is shown as it is.
_SOURCES = {"the form": "config.source_form", "command-line overrides": "config.source_overrides"}


class FieldProblem(ValueError):
    """A validator's refusal, said by key: pydantic keeps the exception in its error's context, so the problem
    is shown in the reader's language; as a ValueError its text is the English."""

    def __init__(self, key: str, /, **args: Any):
        self.message = say(key, **args)
        super().__init__(str(self.message))


def regular_expression(value: str) -> str:
    """`value` when it compiles as a regular expression; a field validator's refusal naming the error otherwise."""
    try:
        re.compile(value)
    except re.error as error:
        raise FieldProblem("config.bad_pattern", error=str(error)) from None
    return value


class ConfigError(StudioError):
    """A config that cannot be used; the message names each bad field and what it accepts.

    `problems` are Messages (or plain English text), one line each in every language."""

    def __init__(self, problems: Sequence[str], source: str | None = None):
        self.problems = problems
        self.source = source
        super().__init__("config.invalid", where=self._where(), problems=Joined("list.lines", problems))

    def _where(self) -> Message | str:
        if not self.source:
            return ""
        return say("config.invalid_in", source=say(_SOURCES[self.source]) if self.source in _SOURCES else self.source)

    @classmethod
    def of(
        cls,
        error: ValidationError,
        source: str | None = None,
        line_of: Callable[[tuple[str, ...]], int | None] | None = None,
    ) -> ConfigError:
        return cls(describe_validation_error(error, line_of), source)


def describe_validation_error(
    error: ValidationError,
    line_of: Callable[[tuple[str, ...]], int | None] | None = None,
    prefix: str = "",
) -> list[Message]:
    """One Message per problem: dotted field path, optional YAML line, the reason, the bad value. A validator's
    reason (FieldProblem) is said in each language; pydantic's own reasons stay English."""
    problems = []
    for item in error.errors():
        loc = tuple(str(part) for part in item["loc"])
        line = line_of(loc) if line_of else None
        said = item.get("ctx", {}).get("error")
        # a validator's own sentence needs no prefix; one said by key is shown in each language
        reason: str = said.message if isinstance(said, FieldProblem) else item["msg"].removeprefix("Value error, ")
        got: Message | str = ""
        if item["type"] == "extra_forbidden":
            reason = say("config.unknown_field")
        elif "input" in item and not isinstance(item["input"], (dict, list)):
            got = say("config.got", value=item["input"])
        where = say("config.at_line", line=line) if line else ""
        problems.append(say("config.problem", path=prefix + ".".join(loc), where=where, reason=reason, got=got))
    return problems


def clean_names(names: list[str], empty: FieldProblem) -> list[str]:
    """Strip blanks from a list of names typed by a person; refuse a list left empty."""
    cleaned = [name.strip() for name in names if name.strip()]
    if not cleaned:
        raise empty
    return cleaned
