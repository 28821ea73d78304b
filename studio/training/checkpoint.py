"""Resumable checkpoints: adapter weights, optimizer, scheduler, loop state and RNG, written atomically.

    checkpoint-STEP/adapter/              the PEFT adapter (safetensors)
    checkpoint-STEP/optimizer.safetensors the optimizer's state tensors (moments, projections); optimizer.json: its
                                          groups, numbers and position (BAdam's block)
    checkpoint-STEP/scheduler.json        the learning-rate schedule's position
    checkpoint-STEP/rng.safetensors       torch's generator states
    checkpoint-STEP/best_adapter.safetensors  the best evaluated weights, when kept
    checkpoint-STEP/objective.json        the objective's own state, when it has one (ppo: KL coefficient, score
                                          statistics)
    checkpoint-STEP/manifest.json         size and sha256 of every file above
    checkpoint-STEP/state.json            the loop's counters; written last, so it marks a complete checkpoint

Nothing is pickled: a checkpoint is tensors and JSON, so reading one can never run code.
Checkpoints of earlier versions (.pt files) are read with `weights_only=True`, which refuses
anything but plain tensors and containers.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from studio.errors import CheckpointError
from studio.runs.checkpoints import MANIFEST, LoopState, load_plain, sha256_of, verify_checkpoint
from studio.runs.folder import CHECKPOINT_STATE as STATE
from studio.runs.folder import list_checkpoints

if TYPE_CHECKING:
    from torch.optim.lr_scheduler import LRScheduler

KEEP_CHECKPOINTS = 2
OBJECTIVE_STATE = "objective.json"


@dataclass(frozen=True)
class Gathered:
    weights: dict[str, torch.Tensor]  # whole trainable weights by their names in the model
    optimizer: dict  # the optimizer's state dict, every tensor whole


def trainable_state(model: torch.nn.Module, whole: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The adapter's weights as peft saves them; `whole`: a sharded model's weights gathered (sharding.py)."""
    from studio.training.value_head import head_state
    from studio.training.weights import trained_state

    saved = trained_state(model, whole)
    adapter = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in saved.items()}
    return adapter | head_state(model)  # a value head is whole on every rank


# -- saving -----------------------------------------------------------------------------


def save_checkpoint(
    folder: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler,
    state: LoopState,
    best_weights: dict[str, torch.Tensor] | None,
    gathered: Gathered | None = None,
    objective_state: dict[str, Any] | None = None,
) -> Path:
    """`gathered`: the whole trainable weights and optimizer state of a sharded model (sharding.py), which
    every rank gathered together and rank 0 alone writes. `objective_state`: what the objective carries from step
    to step besides the weights (`read_objective_state` gives it back)."""
    from safetensors.torch import save_file

    target = folder / f"checkpoint-{state.step}"
    staging = folder / f".checkpoint-{state.step}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir(parents=True)
        save_adapter(model, staging / "adapter", gathered.weights if gathered else None)
        _save_optimizer(gathered.optimizer if gathered else optimizer.state_dict(), staging)
        _write_json(staging / "scheduler.json", scheduler.state_dict())
        save_file(_rng_state(), staging / "rng.safetensors")
        if best_weights is not None:
            save_file(best_weights, staging / "best_adapter.safetensors")
        if objective_state:
            _write_json(staging / OBJECTIVE_STATE, objective_state)
        _write_json(staging / MANIFEST, {"format": 2, "files": _describe_files(staging)})
        _write_json(staging / STATE, asdict(state))
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # a disk that filled up mid-save leaves nothing half-made
        raise
    _prune(folder)
    return target


def save_adapter(
    model: torch.nn.Module, folder: Path, whole: dict[str, torch.Tensor] | None = None, initial: Path | None = None
) -> None:
    """peft's adapter files; `whole`: a sharded model's trainable weights, gathered (sharding.whole_trainable);
    `initial`: a PiSSA/OLoRA adapter's start, to save the adapter as a plain LoRA of the original base."""
    from studio.training.value_head import save_head
    from studio.training.weights import save_trained

    save_trained(model, folder, whole, initial)
    save_head(model, folder)


def _save_optimizer(saved: dict, staging: Path) -> None:
    """Each weight's state as `INDEX.NAME` tensors and numbers; a state value that is itself a dict (bitsandbytes'
    8-bit quantisation state, a GaLore/APOLLO projector: optimizers.py) as `INDEX.NAME.KEY`. What the optimizer
    keeps besides its state and groups (BAdam's block position) goes to optimizer.json as it is."""
    from safetensors.torch import save_file

    tensors, scalars, seen = {}, {}, set()
    for index, values in saved["state"].items():
        for key, value in _dotted(values, f"{index}."):
            if isinstance(value, torch.Tensor):
                tensor = value.detach().cpu().contiguous()
                # safetensors refuses tensors that share memory: bitsandbytes gives every weight the same qmap
                tensors[key] = tensor.clone() if tensor.data_ptr() in seen else tensor
                seen.add(tensor.data_ptr())
            else:
                scalars[key] = value
    save_file(tensors, staging / "optimizer.safetensors")
    more = {k: v for k, v in saved.items() if k not in ("state", "param_groups")}
    _write_json(staging / "optimizer.json", {"param_groups": saved["param_groups"], "scalars": scalars, **more})


def _dotted(values: dict, prefix: str) -> Iterator[tuple[str, Any]]:
    for name, value in values.items():
        if isinstance(value, dict):  # one level: the inner keys may hold dots of their own
            yield from ((f"{prefix}{name}.{inner}", v) for inner, v in value.items())
        else:
            yield f"{prefix}{name}", value


def _rng_state() -> dict[str, torch.Tensor]:
    states = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        states.update({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return states


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, allow_nan=True))


def _describe_files(staging: Path) -> dict[str, dict]:
    return {
        str(path.relative_to(staging)): {"bytes": path.stat().st_size, "sha256": sha256_of(path)}
        for path in sorted(staging.rglob("*"))
        if path.is_file()
    }


def _prune(folder: Path) -> None:
    for old in list_checkpoints(folder)[KEEP_CHECKPOINTS:]:
        shutil.rmtree(old, ignore_errors=True)


# -- checking and loading ---------------------------------------------------------------


def load_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler,
    sharded: bool = False,
) -> tuple[LoopState, dict | None]:
    """Restore everything save_checkpoint wrote; returns (state, best_weights or None). `sharded`: into a model
    sharded by sharding.py, each rank taking its own slice."""
    path = Path(path)
    state = verify_checkpoint(path)
    try:
        _restore(path, model, optimizer, scheduler, sharded)
        best = _best_weights(path)
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as error:  # shapes or groups of another model
        raise CheckpointError("training.checkpoint_does_not_fit", path=path, error=error) from None
    return state, best


def _restore(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: LRScheduler, sharded: bool
) -> None:
    from safetensors.torch import load_file

    from studio.training import sharding
    from studio.training.value_head import load_head_state, read_head
    from studio.training.weights import load_trained_state

    adapter = load_file(path / "adapter" / "adapter_model.safetensors")
    load_head_state(model, read_head(path / "adapter") or {})
    if sharded:
        sharding.load_trainable(model, adapter)
    else:
        load_trained_state(model, adapter)
    if (path / "optimizer.safetensors").is_file():
        saved = _read_optimizer(path)
        scheduler.load_state_dict(json.loads((path / "scheduler.json").read_text()))
        _set_rng_state(load_file(path / "rng.safetensors"))
    else:
        saved = load_plain(path / "optimizer.pt")
        scheduler.load_state_dict(load_plain(path / "scheduler.pt"))
        torch.set_rng_state(load_plain(path / "rng.pt"))
    if sharded:
        sharding.scatter_optimizer(optimizer, saved)
    else:
        optimizer.load_state_dict(saved)


def read_objective_state(path: str | Path) -> dict[str, Any]:
    """The objective's state a checkpoint kept ({} when it kept none, as checkpoints of other stages)."""
    found = Path(path) / OBJECTIVE_STATE
    if not found.is_file():
        return {}
    try:
        state = json.loads(found.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CheckpointError("training.checkpoint_does_not_fit", path=path, error=error) from None
    return state if isinstance(state, dict) else {}


def _read_optimizer(path: Path) -> dict:
    from safetensors.torch import load_file

    saved = json.loads((path / "optimizer.json").read_text())
    state: dict[int, dict] = {}
    values = {**load_file(path / "optimizer.safetensors"), **saved.pop("scalars")}
    for key, value in values.items():
        index, name = key.split(".", 1)
        values_of = state.setdefault(int(index), {})
        if "." in name:  # a dict state value (_dotted)
            name, inner = name.split(".", 1)
            values_of.setdefault(name, {})[inner] = value
        else:
            values_of[name] = value
    for group in saved["param_groups"]:
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])  # JSON has no tuples; AdamW keeps them as one
    return {**saved, "state": state}


def _set_rng_state(states: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(states["cpu"])
    cuda = [states[k] for k in sorted((k for k in states if k.startswith("cuda.")), key=lambda k: int(k.split(".")[1]))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _best_weights(path: Path) -> dict | None:
    from safetensors.torch import load_file

    if (path / "best_adapter.safetensors").is_file():
        return load_file(path / "best_adapter.safetensors")
    if (path / "best_adapter.pt").is_file():
        return load_plain(path / "best_adapter.pt")
    return None
