"""The one error type for problems a user can fix.

Everything raised as a StudioError carries a message that says what is wrong and what to do;
the CLI prints it as one line and the UI shows it in the page. Any other exception is a bug
and is shown as one (with its traceback in the log), never passed off as the user's mistake.
"""

from __future__ import annotations


class StudioError(Exception):
    """A problem the user can fix. `zh` is the Chinese message where one is written."""

    def __init__(self, message: str, zh: str | None = None):
        super().__init__(message)
        self.zh = zh

    def text(self, lang: str = "en") -> str:
        return self.zh if lang == "zh" and self.zh else str(self)


class PathNotAllowed(StudioError):
    """A path from the browser that leaves the served workspace."""


class RunNotFound(StudioError):
    def __init__(self, run_id: str):
        self.run_id = run_id
        super().__init__(f"No run named {run_id!r}.", f"没有名为 {run_id!r} 的训练。")


class RunStateError(StudioError):
    """An action the run's current state does not allow (resume a finished run, ...)."""


class CheckpointError(StudioError):
    """A checkpoint that is missing, incomplete or damaged; the message names the file."""
