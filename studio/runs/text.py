"""A run's events as a person reads them: one line per event (the CLI's follow, the page's log) and durations."""

from __future__ import annotations

from pathlib import Path

from studio.runs.events import (
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
    Rewards,
    Started,
    Step,
)


def format_duration(seconds: float | None, unknown: str = "?") -> str:
    if seconds is None:
        return unknown
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


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
        case Rewards():
            return _rewards_line(event)
        case Checkpoint():
            return f"[checkpoint] step {event.step} -> {event.path}"
        case Log():
            return f"[{event.level}] {event.message}"
        case Finished():
            saved = "model" if Path(event.adapter_dir).name == "model" else "adapter"  # full, freeze: a whole model
            return f"[finished] {event.step} steps in {format_duration(event.elapsed_s)}; {saved}: {event.adapter_dir}"
        case Failed():
            return f"[failed] {event.error}\n{event.traceback[-1500:]}"
        case Aborted():
            return f"[aborted] at step {event.step}; checkpoint: {event.checkpoint or 'none'}"
    return None


def _rewards_line(event: Rewards) -> str:
    parts = [f"{event.split:5} step {event.step}  reward {event.reward_mean:+.4f} ± {event.reward_std:.4f}"]
    parts += [f"{name} {value:.3f}" for name, value in event.functions.items()]
    if event.kl is not None:
        parts.append(f"kl {event.kl:.4f}")
    parts.append(f"length {event.completion_length:.1f}")
    if event.flat_groups is not None:
        parts.append(f"flat groups {event.flat_groups:.0%}")
    if event.clip_fraction is not None and event.value_loss is not None:
        parts.append(f"clipped {event.clip_fraction:.1%}  value loss {event.value_loss:.4f}")
    return "  ".join(parts)
