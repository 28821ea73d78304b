"""Following a run from a terminal: one line per event, Ctrl-C asks the run to checkpoint and stop."""

from __future__ import annotations

import time
from collections.abc import Callable

from studio.events import (
    TERMINAL,
    Aborted,
    AttemptStarted,
    Checkpoint,
    Eval,
    Event,
    Failed,
    Finished,
    Log,
    Phase,
    Preference,
    Started,
    Step,
)
from studio.monitoring import format_duration
from studio.run_folder import ENDED_STATES


def describe(event: Event) -> str | None:
    """One line for a person; None for events that only charts show (GPU readings, evaluation progress)."""
    match event:
        case AttemptStarted() if event.attempt > 1:
            return f"[attempt {event.attempt}] resuming from {event.resumed_from} (step {event.start_step})"
        case Phase():
            return f"[{event.name}] {event.message}"
        case Started():
            return (
                f"[started] {event.stage} · {event.method} on {event.device}; {event.trainable_params:,} of "
                f"{event.total_params:,} "
                f"parameters trainable; {event.train_examples} train / {event.val_examples} validation examples; "
                f"{event.total_steps} steps"
            )
        case Step():
            return (
                f"step {event.step}/{event.total_steps}  epoch {event.epoch:.2f}  loss {event.loss:.4f}  "
                f"lr {event.learning_rate:.2e}  {event.tokens_per_second:.0f} tok/s  "
                f"elapsed {format_duration(event.elapsed_s)}  eta {format_duration(event.eta_s)}"
            )
        case Eval():
            return f"eval  step {event.step}  eval_loss {event.eval_loss:.4f}  (best {event.best_eval_loss:.4f})"
        case Preference():
            kl = f"  kl {event.kl:.4f}" if event.kl is not None else ""
            return (
                f"{event.split:5} step {event.step}  rewards chosen {event.rewards_chosen:+.4f}  rejected "
                f"{event.rewards_rejected:+.4f}  margin {event.reward_margin:+.4f}  accuracy "
                f"{event.reward_accuracy:.0%}{kl}"
            )
        case Checkpoint():
            return f"[checkpoint] step {event.step} -> {event.path}"
        case Log():
            return f"[{event.level}] {event.message}"
        case Finished():
            return f"[finished] {event.step} steps in {format_duration(event.elapsed_s)}; adapter: {event.adapter_dir}"
        case Failed():
            return f"[failed] {event.error}\n{event.traceback[-1500:]}"
        case Aborted():
            return f"[aborted] at step {event.step}; checkpoint: {event.checkpoint or 'none'}"
    return None


def follow_run(
    service,
    run_id: str,
    poll_s: float = 0.5,
    out=print,
    interrupts: Callable[[], int] = lambda: 0,
    stopping: bool = False,
) -> int:
    """Print the run's events until its attempt ends; exit code 0 only when it finished.

    The status decides when the run has ended, so a run whose folder could no longer take its
    last event (disk full) still ends here, with the reason the service worked out.
    The first Ctrl-C (a KeyboardInterrupt, or a press that `interrupts()` counts at each poll) asks the run to
    checkpoint and stop, unless `stopping` says that was asked already; the next one stops watching.
    """
    offset, ended_by_event = 0, False
    while True:
        try:
            for _ in range(interrupts()):
                stopping = ask_to_stop(service, run_id, stopping, out)
            events, offset = service.read_events(run_id, offset)
            for event in events:
                ended_by_event = isinstance(event, TERMINAL) or (
                    ended_by_event and not isinstance(event, AttemptStarted)
                )
                line = describe(event)
                if line:
                    out(line)
            status = service.status(run_id)
            if status.state in ENDED_STATES and not service.read_events(run_id, offset)[0]:
                if not ended_by_event:
                    out(f"[{status.state}] {status.message}")
                return 0 if status.state == "finished" else 1
            time.sleep(poll_s)
        except KeyboardInterrupt:
            stopping = ask_to_stop(service, run_id, stopping, out)


def ask_to_stop(service, run_id: str, stopping: bool, out=print) -> bool:
    """A Ctrl-C while a run is followed: the first asks the run to stop; a later one stops watching (it raises)."""
    if stopping:
        raise KeyboardInterrupt
    out("Asking the run to save a checkpoint and stop (Ctrl-C again to stop watching)...")
    service.abort(run_id)
    return True
