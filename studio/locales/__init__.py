"""One translation table for everything the studio says to people, and the one way to say it.

The table is the YAML files in this folder, read as one: `key: {en: ..., zh: ..., ru: ..., ko: ..., ja: ...}`, a key
in exactly one file.
    page.yaml        the page's fixed text, keyed by the element's id (tab names, buttons, notes)
    fields.yaml      config fields: `section.field` its label, `section.field.help` its help; the English of
                     both lives on the field itself (its name and its description), the table holds the rest
    messages/*.yaml  what the backend says (errors, progress, notes), keyed `area.what`, one file per area
Templates are `str.format` templates (a literal brace is doubled); an argument that is itself a Message or a
StudioError is rendered in the same language. Adding a language is adding its column (a line to each entry) and its
name to LANGUAGES; an entry without a cell in some language shows its English there.

The backend says things with `say(key, **args)` (a Message: a str whose value is its English, so logs and the
CLI print it as it is), `Joined(separator_key, items)` (a list or a sum, its separator per language) or raises
`StudioError(key, **args)`; the page and the CLI render any of them with `in_language(thing, lang)`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self is Python 3.11's; the studio runs on 3.10 too

LANGUAGES = {"en": "English", "zh": "中文", "ru": "Русский", "ko": "한국어", "ja": "日本語"}  # LlamaBoard's five
ENGLISH = "en"
HERE = Path(__file__).resolve().parent


@functools.cache
def table() -> dict[str, dict[str, str]]:
    """Every entry of every file of the table (a key found twice is a bug in the table: it says which files)."""
    entries: dict[str, dict[str, str]] = {}
    where: dict[str, Path] = {}
    for path in sorted(HERE.rglob("*.yaml")):
        with open(path, encoding="utf-8") as handle:
            for key, cells in (yaml.safe_load(handle) or {}).items():
                if key in entries:
                    raise RuntimeError(f"translation key {key!r} is in both {where[key]} and {path}")
                entries[key], where[key] = cells, path
    return entries


def has(key: str) -> bool:
    return key in table()


def template(key: str, lang: str, english: str | None = None) -> str:
    """The text of `key` in `lang`; its English where that cell is empty (`english`: the English kept in code, for
    config fields). An unknown key is a bug: KeyError."""
    cells = table()[key]
    return cells.get(lang) or cells.get(ENGLISH) or english or key


def render(key: str, args: dict[str, Any], lang: str) -> str:
    values = {name: in_language(value, lang) if _speaks(value) else value for name, value in args.items()}
    return template(key, lang).format(**values)  # always: a literal brace is doubled in every template


class Message(str):
    """Something the backend says, as a key of the table and its arguments; as a str, its English text."""

    key: str
    args: dict[str, Any]

    def __new__(cls, key: str, /, **args: Any) -> Self:
        text = super().__new__(cls, render(key, args, ENGLISH))
        text.key, text.args = key, args
        return text

    def text(self, lang: str) -> str:
        return render(self.key, self.args, lang)

    # A Message is immutable; copied or pickled, it keeps its text and what it was said from (str's own way
    # would rebuild it from its English text, which is no key).
    def __copy__(self) -> Self:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Self:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuilt, (type(self), str(self), self.__dict__)


def _rebuilt(cls: type[Message], text: str, state: dict[str, Any]) -> Message:
    message = str.__new__(cls, text)
    message.__dict__.update(state)
    return message


def say(key: str, /, **args: Any) -> Message:
    return Message(key, **args)


class Joined(Message):
    """Things said one after another with the separator `key` gives in each language (a list of problems, a sum)."""

    items: list[object]

    def __new__(cls, key: str, items: Iterable[object]) -> Self:
        items = list(items)
        text = str.__new__(cls, template(key, ENGLISH).join(in_language(item, ENGLISH) for item in items))
        text.key, text.args, text.items = key, {}, items
        return text

    def text(self, lang: str) -> str:
        return template(self.key, lang).join(in_language(item, lang) for item in self.items)


def in_language(thing: object, lang: str) -> str:
    """`thing` for a reader of `lang`: a Message or StudioError in its language, anything else as it is."""
    text = getattr(thing, "text", None)
    return text(lang) if _speaks(thing) and callable(text) else str(thing)


def cli_language() -> str:
    """The command line's language: QLORA_STUDIO_LANG when it names one of LANGUAGES, else English."""
    chosen = os.environ.get("QLORA_STUDIO_LANG", "")
    return chosen if chosen in LANGUAGES else ENGLISH


def _speaks(value: object) -> bool:
    return isinstance(value, Message) or (isinstance(value, Exception) and callable(getattr(value, "text", None)))
