"""Where a PPO run finds its reward model: a finished rm run by name, or an adapter folder with a value head.

Read by the supervisor before a run starts (so a wrong name is refused at Start) and by the worker that loads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from studio.errors import StudioError

if TYPE_CHECKING:
    from studio.config import ModelConfig

HEAD_FILE = "value_head.safetensors"  # the reward model's (or PPO critic's) head, beside its adapter


class RewardModelError(StudioError):
    """The reward model named is no finished rm run, or does not fit this run's base model."""


def reward_model_folder(name: str, runs_dir: str | Path) -> Path:
    """A run name in the runs folder (its adapter), or an adapter folder given by path."""
    if not name or not name.strip():
        raise RewardModelError("training.reward_model_missing")
    as_run = Path(runs_dir) / name / "adapter"
    folder = as_run if as_run.is_dir() else Path(name)
    if not folder.is_dir():
        raise RewardModelError("training.reward_model_not_found", name=name, runs_dir=runs_dir)
    if not (folder / HEAD_FILE).is_file():
        raise RewardModelError("training.reward_model_no_head", name=name)
    return folder


def check_same_base(folder: Path, model: ModelConfig) -> None:
    """The reward model's adapter was trained on this run's base (its studio_config.yaml says which)."""
    saved = folder / "studio_config.yaml"
    if not saved.is_file():
        return  # an adapter from elsewhere (LLaMA-Factory's): its shapes are checked when it loads
    recorded = (yaml.safe_load(saved.read_text(encoding="utf-8")) or {}).get("model", {}).get("name_or_path")
    if recorded and recorded != model.name_or_path:
        raise RewardModelError(
            "training.reward_model_other_base", folder=folder, base=recorded, ours=model.name_or_path
        )
