"""How a handler's failure reaches the page: a StudioError says what to do; anything else is a bug.

Bugs are never passed off as the user's mistake: the page says so and the traceback goes to the
server's log, where the person running the studio can find it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

from app.i18n import T
from studio.errors import StudioError
from studio.locales import LANGUAGES

log = logging.getLogger("qlora_studio.ui")


def problem(error: Exception, lang: str, markdown: bool = True) -> str:
    """What to show for `error`, in the page's language (Markdown, or plain text for a <pre> box)."""
    if not isinstance(error, StudioError):
        log.error("A UI handler failed", exc_info=error)
    return _describe(error, lang, markdown)


def failure(error: Exception) -> Callable[[str], str]:
    """`problem` for `said`: a bug is logged once, however many languages then say it."""
    problem(error, "en")
    return partial(_describe, error)


def said(say: Callable[[str], str], lang: str) -> tuple[str, dict[str, str]]:
    """A message in the page's language now, and in every language for a later language switch."""
    every = {code: say(code) for code in LANGUAGES}
    return every[lang], every


def _describe(error: Exception, lang: str, markdown: bool = True) -> str:
    strong = "**" if markdown else ""
    if isinstance(error, StudioError):
        return f"{strong}{T.error(lang)}:{strong} {error.text(lang)}"
    return f"{strong}{T.bug(lang)}:{strong} {type(error).__name__}: {error}. {T.bug_hint(lang)}"
