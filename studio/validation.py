"""Everything about a run that can be checked before its folder exists or a worker starts."""

from __future__ import annotations

import os
from pathlib import Path

from studio.config import RunConfig
from studio.data.prepare import check_tool_template, load_conversations, split_conversations
from studio.data.registry import DataError
from studio.modeling.embedded import gguf_file
from studio.modeling.loader import ModelLoadError
from studio.paths import cache_dir


def validate_run(config: RunConfig) -> None:
    """Raise DataError or ModelLoadError with a message that says what to fix."""
    _check_data(config)
    _check_model(config)
    _check_resume(config)


def _check_data(config: RunConfig) -> None:
    loaded = load_conversations(config.data)
    check_tool_template(loaded, config.model.chat_template, config.model.name_or_path)
    split = split_conversations(loaded, config.data.val_size, config.training.seed)
    if not split.train:
        raise DataError("Every example went to the validation split; lower data.val_size or add examples.")
    if config.training.early_stopping_patience and not split.val and config.data.val_size > 0:
        raise DataError("Early stopping needs a validation split; raise data.val_size or add examples.")


def _check_model(config: RunConfig) -> None:
    model = config.model
    if model.is_embedded:
        if not (cache_dir() / "models" / "SmolLM2-135M-Instruct" / ".converted").exists():
            try:
                gguf_file()
            except RuntimeError as error:
                raise ModelLoadError(str(error)) from None
        return
    path = Path(model.name_or_path).expanduser()
    if path.exists() or model.name_or_path.startswith((".", "/", "~")):
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"Model folder {path} not found or has no config.json. Give a folder saved with save_pretrained, or a hub id."
            )
        return
    if os.environ.get("HF_HUB_OFFLINE") == "1" and not _in_hub_cache(model.name_or_path):
        raise ModelLoadError(
            f"'{model.name_or_path}' is not in the local Hugging Face cache and HF_HUB_OFFLINE=1. "
            "Download it once with network access, or give the path of a local copy."
        )


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def _check_resume(config: RunConfig) -> None:
    checkpoint = config.training.resume_from_checkpoint
    if checkpoint and not (Path(checkpoint) / "state.json").is_file():
        raise ModelLoadError(f"resume_from_checkpoint: {checkpoint} is not a complete checkpoint folder (no state.json).")
