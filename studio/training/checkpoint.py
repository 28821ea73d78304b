"""Resumable checkpoints: adapter weights, optimizer, scheduler, loop state and RNG, written atomically."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

KEEP_CHECKPOINTS = 2


@dataclass
class LoopState:
    step: int = 0
    best_eval_loss: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0
    last_eval_step: int | None = None


def trainable_state(model) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    return {k: v.detach().to("cpu", copy=True) for k, v in get_peft_model_state_dict(model).items()}


def save_checkpoint(folder: Path, model, optimizer, scheduler, state: LoopState, best_weights) -> Path:
    target = folder / f"checkpoint-{state.step}"
    staging = folder / f".checkpoint-{state.step}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model.save_pretrained(staging / "adapter")
    torch.save(optimizer.state_dict(), staging / "optimizer.pt")
    torch.save(scheduler.state_dict(), staging / "scheduler.pt")
    torch.save(torch.get_rng_state(), staging / "rng.pt")
    if best_weights is not None:
        torch.save(best_weights, staging / "best_adapter.pt")
    # state.json last: its presence marks a complete checkpoint
    (staging / "state.json").write_text(json.dumps(asdict(state)))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
    _prune(folder)
    return target


def _prune(folder: Path) -> None:
    complete = sorted(
        (p for p in folder.glob("checkpoint-*") if (p / "state.json").is_file()),
        key=lambda p: int(p.name.rsplit("-", 1)[1]),
    )
    for old in complete[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(path: Path, model, optimizer, scheduler):
    """Restore everything saved by save_checkpoint; returns (state, best_weights or None)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / "state.json").is_file():
        raise FileNotFoundError(f"{path} is not a complete checkpoint (no state.json).")
    weights = load_file(path / "adapter" / "adapter_model.safetensors")
    set_peft_model_state_dict(model, weights)
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    torch.set_rng_state(torch.load(path / "rng.pt"))
    best_file = path / "best_adapter.pt"
    best = torch.load(best_file) if best_file.is_file() else None
    return LoopState(**json.loads((path / "state.json").read_text())), best
