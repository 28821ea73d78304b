"""The one error type for problems a user can fix.

Everything raised as a StudioError carries a message that says what is wrong and what to do: a key of the
translation table (studio/locales) and its arguments. The CLI prints it as one line and the page shows it in the
reader's language. Any other exception is a bug and is shown as one (with its traceback in the log), never passed
off as the user's mistake.
"""

from __future__ import annotations

from typing import Any

from studio.locales import Message


class StudioError(Exception):
    """A problem the user can fix: `key` names its message in the translation table, `args` fill it."""

    def __init__(self, key: str, /, **args: Any):
        self.message = Message(key, **args)
        super().__init__(str(self.message))

    def text(self, lang: str = "en") -> str:
        return self.message.text(lang)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled (a process pool, a queue), it comes back as it was: Exception's own way would call the class
        with the English text, which is no key."""
        return _rebuilt, (type(self), self.message, self.__dict__)


def _rebuilt(cls: type[StudioError], message: Message, state: dict[str, Any]) -> StudioError:
    error = cls.__new__(cls)
    Exception.__init__(error, str(message))
    error.__dict__.update(state)
    return error


class PathNotAllowed(StudioError):
    """A path from the browser that leaves the served workspace."""


class RunNotFound(StudioError):
    def __init__(self, run_id: str):
        self.run_id = run_id
        super().__init__("run.not_found", run_id=run_id)


class RunStateError(StudioError):
    """An action the run's current state does not allow (resume a finished run, ...)."""


class CheckpointError(StudioError):
    """A checkpoint that is missing, incomplete or damaged; the message names the file."""
