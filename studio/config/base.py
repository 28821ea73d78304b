"""Shared machinery of the config sections: field metadata, readable errors.

Every section is a pydantic model; a field's description is its help text and
`json_schema_extra` carries what a UI needs to build a control (Chinese label,
whether it belongs to the advanced accordion). Nothing else lists defaults.
"""

from __future__ import annotations

from collections.abc import Callable
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


_SOURCES_ZH = {"the form": "表单", "command-line overrides": "命令行参数"}


class FieldProblem(ValueError):
    """A validator's refusal in both languages: pydantic keeps the exception in its error's context."""

    def __init__(self, en: str, zh: str):
        super().__init__(en)
        self.zh = zh


class ConfigError(StudioError):
    """A config that cannot be used; the message names each bad field and what it accepts."""

    def __init__(self, problems: list[str], source: str | None = None, problems_zh: list[str] | None = None):
        self.problems = problems
        self.source = source
        where = f" in {source}" if source else ""
        where_zh = f"（{_SOURCES_ZH.get(source, source)}）" if source else ""
        lines = "\n".join(f"  - {p}" for p in problems)
        lines_zh = "\n".join(f"  - {p}" for p in problems_zh or problems)
        super().__init__(f"Invalid configuration{where}:\n{lines}", f"配置无效{where_zh}：\n{lines_zh}")

    @classmethod
    def of(cls, error: ValidationError, source: str | None = None, line_of=None) -> ConfigError:
        return cls(
            describe_validation_error(error, line_of), source, describe_validation_error(error, line_of, lang="zh")
        )


def describe_validation_error(
    error: ValidationError,
    line_of: Callable[[tuple[str, ...]], int | None] | None = None,
    prefix: str = "",
    lang: str = "en",
) -> list[str]:
    """One line per problem: dotted field path, optional YAML line, the reason, the bad value. In Chinese (`lang`
    zh) where the validator said it in both languages (FieldProblem); pydantic's own reasons stay English."""
    problems = []
    for item in error.errors():
        loc = tuple(str(part) for part in item["loc"])
        path = prefix + ".".join(loc)
        line = line_of(loc) if line_of else None
        where = (f"（第 {line} 行）" if lang == "zh" else f" (line {line})") if line else ""
        message = item["msg"].removeprefix("Value error, ")  # a validator's own sentence needs no prefix
        said = item.get("ctx", {}).get("error")
        if lang == "zh" and isinstance(said, FieldProblem):
            message = said.zh
        if item["type"] == "extra_forbidden":
            message = (
                "未知字段；请对照 `qlora-studio train --help` 检查拼写"
                if lang == "zh"
                else "unknown field; check the spelling against `qlora-studio train --help`"
            )
        elif "input" in item and not isinstance(item["input"], (dict, list)):
            message += f"（输入为 {item['input']!r}）" if lang == "zh" else f" (got {item['input']!r})"
        problems.append(f"{path}{where}: {message}")
    return problems


def clean_names(names: list[str], empty: FieldProblem) -> list[str]:
    """Strip blanks from a list of names typed by a person; refuse a list left empty."""
    cleaned = [name.strip() for name in names if name.strip()]
    if not cleaned:
        raise empty
    return cleaned
