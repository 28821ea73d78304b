"""Ctrl-C for a command that starts work in another process: counted, so that no press is lost.

Python's own handler raises KeyboardInterrupt wherever the main thread happens to be, and library
code may swallow it (a bare `except:`, a finaliser). The command line installs `CTRL_C` before
anything slow: it raises as Python's handler does, and also counts the presses, so that `check()`
at a named point raises for a press whose exception never arrived. Inside `counting()` nothing is
raised at all: the caller reads new presses with `take()` at moments of its choosing (a command
that follows a run turns the first press into a request to checkpoint and stop).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType


class CtrlC:
    def __init__(self) -> None:
        self.presses = 0
        self._handled = 0
        self._raising = True

    def install(self) -> CtrlC:
        signal.signal(signal.SIGINT, self._on_signal)
        return self

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.presses += 1
        if self._raising:
            raise KeyboardInterrupt

    def handled(self) -> None:
        """Every press so far has been acted on (a KeyboardInterrupt was caught and dealt with)."""
        self._handled = self.presses

    def take(self) -> int:
        """Presses not acted on yet; from now on they count as handled."""
        new, self._handled = self.presses - self._handled, self.presses
        return new

    def check(self) -> None:
        """Raise KeyboardInterrupt for a press not acted on yet (its own exception was swallowed on the way)."""
        if self.take():
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def counting(self) -> Iterator[CtrlC]:
        """Presses are only counted here, never raised: read them with take()."""
        raising, self._raising = self._raising, False
        try:
            yield self
        finally:
            self._raising = raising


CTRL_C = CtrlC()
