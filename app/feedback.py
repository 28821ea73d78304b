"""How a handler's failure reaches the page: a StudioError says what to do; anything else is a bug.

Bugs are never passed off as the user's mistake: the page says so and the traceback goes to the
server's log, where the person running the studio can find it.
"""

from __future__ import annotations

import logging

from app.i18n import T
from studio.errors import StudioError

log = logging.getLogger("qlora_studio.ui")


def problem(error: Exception, lang: str, markdown: bool = True) -> str:
    """What to show for `error`, in the page's language (Markdown, or plain text for a <pre> box)."""
    strong = "**" if markdown else ""
    if isinstance(error, StudioError):
        return f"{strong}{T.error(lang)}:{strong} {error.text(lang)}"
    log.error("A UI handler failed", exc_info=error)
    return f"{strong}{T.bug(lang)}:{strong} {type(error).__name__}: {error}. {T.bug_hint(lang)}"
