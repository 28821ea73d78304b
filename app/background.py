"""Running long backend work off the event loop while a Gradio generator streams its progress."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator


def run_with_updates(
    work: Callable[[Callable[[object], None]], object], tick_s: float | None = None
) -> Iterator[tuple[str, object]]:
    """Run `work(report)` in a thread; yield ("progress", item) for each report,
    then ("done", result) or ("error", exc).

    With `tick_s`, also ("tick", None) whenever that long passed without a report, so a page can keep its clock moving.
    """
    updates: queue.Queue = queue.Queue()

    def target():
        try:
            updates.put(("done", work(lambda item: updates.put(("progress", item)))))
        except Exception as error:  # handed to the page, which stays up
            updates.put(("error", error))

    threading.Thread(target=target, daemon=True).start()
    while True:
        try:
            kind, value = updates.get(timeout=tick_s)
        except queue.Empty:
            kind, value = "tick", None
        yield kind, value
        if kind in ("done", "error"):
            return
