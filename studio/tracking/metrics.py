"""Which event becomes which metric: one function per event type, names grouped as the trackers show them
(train/, eval/, system/, final/). The values are the events' own, so a tracker's curve is events.jsonl's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from studio.runs.events import Eval, Event, Finished, Gpu, Preference, Rewards, Step


def _step(event: Step) -> dict[str, float | None]:
    return {
        "train/loss": event.loss,
        "train/learning_rate": event.learning_rate,
        "train/grad_norm": event.grad_norm,
        "train/epoch": event.epoch,
        "train/tokens_per_second": event.tokens_per_second,
        "system/rss_mib": event.rss_mib,  # the worker's resident memory
    }


def _eval(event: Eval) -> dict[str, float | None]:
    return {"eval/loss": event.eval_loss, "eval/best_loss": event.best_eval_loss}


def _preference(event: Preference) -> dict[str, float | None]:
    names = ("rewards_chosen", "rewards_rejected", "reward_margin", "reward_accuracy", "kl")
    return {f"{event.split}/{name}": getattr(event, name) for name in names}


def _rewards(event: Rewards) -> dict[str, float | None]:
    names = ("reward_mean", "reward_std", "kl", "completion_length", "ended", "flat_groups", "clip_fraction")
    metrics = {f"{event.split}/{name}": getattr(event, name) for name in (*names, "value_loss")}
    metrics.update({f"{event.split}/reward_{function}": mean for function, mean in event.functions.items()})
    metrics.update({f"{event.split}/reward_{function}_std": std for function, std in event.function_std.items()})
    return metrics


def _gpu(event: Gpu) -> dict[str, float | None]:
    metrics: dict[str, float | None] = {}
    for reading in event.gpus:
        metrics[f"system/gpu{reading.index}_used_mib"] = reading.used_mib
        metrics[f"system/gpu{reading.index}_utilization_pct"] = reading.utilization_pct
    return metrics


def _finished(event: Finished) -> dict[str, float | None]:
    return {
        "final/train_loss": event.train_loss,
        "final/best_eval_loss": event.best_eval_loss,
        "final/elapsed_s": event.elapsed_s,
    }


MAPPERS: dict[str, Callable[[Any], dict[str, float | None]]] = {
    "step": _step,
    "eval": _eval,
    "preference": _preference,
    "rewards": _rewards,
    "gpu": _gpu,
    "finished": _finished,
}


def metrics_of(event: Event) -> dict[str, float]:
    """The event's metrics, those it has (None: not measured); empty for events that carry none."""
    mapper = MAPPERS.get(event.type)
    if mapper is None:
        return {}
    return {name: float(value) for name, value in mapper(event).items() if value is not None}
