"""Checkpoints as the run record holds them: the loop's state, the manifest of every file's size and sha256, and
their verification — cheap, with no model and no torch unless a legacy checkpoint has to be opened. Both the
supervisor (before it resumes a run) and the worker (before it loads one) verify through here; writing and
restoring live with the training loop (studio/training/checkpoint.py)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.errors import CheckpointError
from studio.runs.folder import CHECKPOINT_STATE as STATE

MANIFEST = "manifest.json"


@dataclass
class LoopState:
    step: int = 0
    best_eval_loss: float | None = None  # the eval loss of the best evaluation
    best_step: int | None = None
    best_score: float | None = None  # training.best_metric at the best evaluation (None before it existed: eval_loss)
    evals_without_improvement: int = 0
    last_eval_step: int | None = None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_checkpoint(path: Path) -> LoopState:
    """The checkpoint's loop state, once every file is present and unchanged; CheckpointError naming the file otherwise.

    Cheap enough to run before a worker starts: it reads the files once, loads no model.
    """
    path = Path(path)
    state = _read_state(path)
    manifest = path / MANIFEST
    if not manifest.is_file():
        _verify_legacy(path)
        return state
    try:
        files = json.loads(manifest.read_text())["files"]
    except (OSError, ValueError, KeyError) as error:
        raise CheckpointError("runs.file_unreadable", file=manifest, error=error) from None
    for name, expected in files.items():
        file = path / name
        if not file.is_file():
            raise CheckpointError("runs.checkpoint_file_missing", file=file)
        if file.stat().st_size != expected["bytes"] or sha256_of(file) != expected["sha256"]:
            raise CheckpointError("runs.checkpoint_file_damaged", file=file)
    return state


def _read_state(path: Path) -> LoopState:
    state_file = path / STATE
    if not state_file.is_file():
        raise CheckpointError("runs.checkpoint_incomplete", path=path, state=STATE)
    try:
        return LoopState(**json.loads(state_file.read_text()))
    except (OSError, ValueError, TypeError) as error:
        raise CheckpointError("runs.file_unreadable", file=state_file, error=error) from None


def _verify_legacy(path: Path) -> None:
    """A checkpoint written before manifests existed: every file must at least load as plain data."""
    from safetensors import safe_open

    adapter = path / "adapter" / "adapter_model.safetensors"
    try:
        with safe_open(adapter, framework="pt") as handle:
            for key in handle.keys():
                handle.get_tensor(key)
    except Exception as error:  # safetensors raises its own error type for truncated files
        raise CheckpointError("runs.checkpoint_adapter_damaged", adapter=adapter, error=error) from None
    for name in ("optimizer.pt", "scheduler.pt", "rng.pt", "best_adapter.pt"):
        if (path / name).is_file() or name != "best_adapter.pt":
            load_plain(path / name)


def load_plain(file: Path) -> Any:
    """A legacy .pt file, refused unless it is plain tensors and containers (weights_only: no code runs)."""
    import torch

    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError("runs.checkpoint_file_missing", file=file) from None
    except Exception as error:  # an unpickling refusal, a truncated zip, ...: all mean the file cannot be used
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError("runs.checkpoint_file_unsafe", file=file, error=first_line) from None
