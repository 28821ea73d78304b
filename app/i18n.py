"""The page's fixed text: keys of the one translation table (studio/locales/page.yaml), rendered per language.

Config-field labels and help come from the table too (studio/locales/fields.yaml, read by app/form.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import studio.locales as locales

# the language switch: display name -> code, as studio/locales names them (a new language needs nothing here)
LANGUAGES = {name: code for code, name in locales.LANGUAGES.items()}


@dataclass(frozen=True)
class Text:
    """A key of the table, with the values it is `filled` with so far."""

    key: str
    values: dict[str, Any] = field(default_factory=dict)

    def __call__(self, lang: str, **values: Any) -> str:
        return locales.render(self.key, {**self.values, **values}, lang)

    def filled(self, **values: Any) -> Text:
        """The same text with these placeholders filled, in every language (for Labels, which switch languages)."""
        return Text(self.key, {**self.values, **values})


class _Table:
    """`T.tab_train` is the text of the table's key "tab_train"; a key the table lacks is an AttributeError, so a
    typo fails where it is used rather than showing a key."""

    def __getattr__(self, key: str) -> Text:
        if not locales.has(key):
            raise AttributeError(f"{key!r} is not in the translation table (studio/locales/page.yaml)")
        return Text(key)


T = _Table()


def named(prefix: str, name: str, lang: str) -> str:
    """The table's <prefix>_<name> in `lang`, or the name itself when the table has no entry (a new state, ...)."""
    key = f"{prefix}_{name}"
    return locales.template(key, lang) if locales.has(key) else name


class Labels:
    """Components whose fixed text follows the language switch: (component, text, attribute)."""

    def __init__(self):
        self.entries: list[tuple[object, object, str]] = []

    def add(self, component, text: Text, attribute: str = "label"):
        if attribute == "label" and type(component).__name__ == "Button":
            # a button's text is its value: a label update fails the whole language switch at run time
            raise TypeError(f"{type(component).__name__} text follows the language through 'value', not 'label'")
        self.entries.append((component, text, attribute))
        return component

    def add_choices(self, component, choices: list[tuple[Text, str]]):
        """A radio or dropdown whose choice labels follow the language; values stay fixed."""
        self.entries.append((component, choices, "choices"))
        return component

    @property
    def components(self) -> list:
        return list(dict.fromkeys(component for component, _, _ in self.entries))

    def updates(self, lang: str) -> dict:
        """{component: gr.update(...)} with every text attribute of each component in `lang`."""
        import gradio as gr

        changes: dict = {}
        for component, text, attribute in self.entries:
            value = [(label(lang), v) for label, v in text] if attribute == "choices" else text(lang)
            changes.setdefault(component, {})[attribute] = value
        return {component: gr.update(**kwargs) for component, kwargs in changes.items()}
