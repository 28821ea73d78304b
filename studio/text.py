"""Text the backend hands to people, in either language: the English is the string itself, the Chinese rides along.

The CLI prints a Bilingual as the plain string it is; the page shows `.text(lang)`.
"""

from __future__ import annotations


class Bilingual(str):
    zh: str

    def __new__(cls, en: str, zh: str) -> Bilingual:
        text = super().__new__(cls, en)
        text.zh = zh
        return text

    def text(self, lang: str) -> str:
        return self.zh if lang == "zh" else str(self)


def in_language(message: object, lang: str) -> str:
    """`message` for a reader of `lang`: a Bilingual or StudioError in its language, anything else as it is."""
    text = getattr(message, "text", None)
    return text(lang) if callable(text) else str(message)
