"""Following a run from a terminal: one line per event, Ctrl-C asks the run to checkpoint and stop."""

from __future__ import annotations

import time

from studio.events import TERMINAL


def format_duration(seconds: float | None, unknown: str = "?") -> str:
    if seconds is None:
        return unknown
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def describe(event) -> str | None:
    kind = event.type
    if kind == "phase":
        return f"[{event.name}] {event.message}"
    if kind == "started":
        return (
            f"[started] {event.method} on {event.device}; {event.trainable_params:,} of {event.total_params:,} "
            f"parameters trainable; {event.train_examples} train / {event.val_examples} validation examples; "
            f"{event.total_steps} steps"
        )
    if kind == "step":
        return (
            f"step {event.step}/{event.total_steps}  epoch {event.epoch:.2f}  loss {event.loss:.4f}  "
            f"lr {event.learning_rate:.2e}  {event.tokens_per_second:.0f} tok/s  "
            f"elapsed {format_duration(event.elapsed_s)}  eta {format_duration(event.eta_s)}"
        )
    if kind == "eval":
        return f"eval  step {event.step}  eval_loss {event.eval_loss:.4f}  (best {event.best_eval_loss:.4f})"
    if kind == "checkpoint":
        return f"[checkpoint] step {event.step} -> {event.path}"
    if kind == "log":
        return f"[{event.level}] {event.message}"
    if kind == "finished":
        return f"[finished] {event.step} steps in {format_duration(event.elapsed_s)}; adapter: {event.adapter_dir}"
    if kind == "failed":
        return f"[failed] {event.error}\n{event.traceback[-1500:]}"
    if kind == "aborted":
        return f"[aborted] at step {event.step}; checkpoint: {event.checkpoint or 'none'}"
    return None  # gpu readings are for charts, not the terminal


def follow_run(service, run_id: str, poll_s: float = 0.5, out=print) -> int:
    """Print the run's events until its attempt ends; exit code 0 only when it finished."""
    offset, interrupted = 0, False
    while True:
        try:
            events, offset = service.read_events(run_id, offset)
            for event in events:
                line = describe(event)
                if line:
                    out(line)
            if events and isinstance(events[-1], TERMINAL) and service.status(run_id).state in ("finished", "failed", "aborted"):
                return 0 if events[-1].type == "finished" else 1
            if not events and service.status(run_id).state in ("finished", "failed", "aborted"):
                return 0 if service.status(run_id).state == "finished" else 1
            time.sleep(poll_s)
        except KeyboardInterrupt:
            if interrupted:
                raise
            interrupted = True
            out("Asking the run to save a checkpoint and stop (Ctrl-C again to stop watching)...")
            service.abort(run_id)
