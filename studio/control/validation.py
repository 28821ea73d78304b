"""Everything about a run that can be checked before its folder exists or a worker starts, cheapest first."""

from __future__ import annotations

import os
from pathlib import Path

from studio.config import ModelConfig, RunConfig
from studio.config.names import model_source
from studio.data.picture_tokens import vision_model
from studio.data.prepare import (
    check_masking,
    check_vision,
    load_stage_examples,
    named_format,
    split_conversations,
)
from studio.data.registry import DataError
from studio.errors import CheckpointError, StudioError
from studio.modeling import from_modelscope
from studio.modeling.embedded import converted_model_dir, gguf_file
from studio.modeling.sources import ModelLoadError, resolve_model_path
from studio.tracking.registry import check_trackers

HUB_TIMEOUT_S = 10.0


def validate_run(config: RunConfig, runs_dir: str | Path = "runs") -> None:
    """Raise a StudioError (ModelLoadError, CheckpointError, DataError) that says what to fix."""
    check_model(config.model)
    check_resume(config)
    check_init_adapter(config)
    check_rewards(config, runs_dir)
    check_optimizer(config)
    check_trackers(config.logging)
    check_data(config)


def check_rewards(config: RunConfig, runs_dir: str | Path) -> None:
    """ppo: a reward model that exists and shares the base; grpo: at least one reward function, its file found.
    The reward file is not run here: its code runs in the worker only."""
    from studio.runs.reward_models import check_same_base, reward_model_folder

    if config.training.stage == "ppo":
        check_same_base(reward_model_folder(config.ppo.reward_model or "", runs_dir), config.model)
    if config.training.stage == "grpo":
        rewards = config.rewards
        if not rewards.weights():
            raise StudioError("training.no_reward_function")
        if rewards.file and not Path(rewards.file).is_file():
            raise StudioError("training.reward_file_missing", path=rewards.file)


def check_optimizer(config: RunConfig) -> None:
    """An optimizer whose package is not installed; a schedule moved by evaluations in a run without any."""
    from studio.config.optimizer import missing_package
    from studio.config.training import METRIC_SCHEDULERS

    missing = missing_package(config.optimizer.name)
    if missing:
        package, extra = missing
        raise StudioError(
            "training.optimizer_package_missing", name=config.optimizer.name, package=package, extra=extra
        )
    if config.training.lr_scheduler in METRIC_SCHEDULERS and config.data.val_size == 0:
        raise StudioError("training.scheduler_needs_evaluation", name=config.training.lr_scheduler)


def check_data(config: RunConfig) -> None:
    fmt = named_format(config.model.chat_template, config.model.name_or_path)
    check_masking(config.data, config.training.stage, fmt)
    loaded = load_stage_examples(config.data, config.training.stage, config.model.hub)
    check_vision(loaded, config.model.name_or_path, vision_model(config.model))
    split = split_conversations(loaded, config.data.val_size, config.training.seed)
    if not split.train:
        raise DataError("control.all_examples_in_validation")
    if config.training.early_stopping_patience and not split.val and config.data.val_size > 0:
        raise DataError("control.early_stopping_needs_validation")


def check_init_adapter(config: RunConfig) -> None:
    """lora.init_adapter, when given, must be a complete adapter folder (a full or freeze run's model is none)."""
    from studio.adapters import AdapterError, read_peft_adapter

    if config.lora.init_adapter:
        try:
            read_peft_adapter(config.lora.init_adapter)
        except AdapterError as error:
            raise AdapterError("control.field_problem", field="lora.init_adapter", error=error) from None


def check_model(model: ModelConfig) -> None:
    if model.is_embedded:
        if converted_model_dir() is None:
            gguf_file()  # raises EmbeddedModelMissing with the pip command that fixes it
        return
    if model_source(model.name_or_path).kind == "path":
        resolve_model_path(model)  # ModelLoadError: no such folder, or no config.json in it
        return
    if model.hub == "modelscope":
        from_modelscope.check_model(model.name_or_path, ModelLoadError)
        return
    check_hub_model(model.name_or_path)


def check_hub_model(repo_id: str) -> None:
    """A hub id must be in the local cache, or known to the hub when the hub can be reached."""
    if _in_hub_cache(repo_id):
        return
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ModelLoadError("control.hub_offline_not_cached", repo_id=repo_id)
    from huggingface_hub import model_info
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        model_info(repo_id, timeout=HUB_TIMEOUT_S)
    except GatedRepoError:
        raise ModelLoadError("control.hub_gated", repo_id=repo_id) from None
    except RepositoryNotFoundError:
        raise ModelLoadError("control.hub_no_model", repo_id=repo_id) from None
    except Exception as error:  # DNS, proxy, TLS, timeouts: all mean the hub cannot answer from here
        raise ModelLoadError("control.hub_unreachable", repo_id=repo_id, error_type=type(error).__name__) from None


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except ValueError:  # not even a valid repo id
        return False


def check_resume(config: RunConfig) -> None:
    from studio.runs.checkpoints import verify_checkpoint

    checkpoint = config.training.resume_from_checkpoint
    if checkpoint:
        try:
            verify_checkpoint(Path(checkpoint).expanduser())
        except CheckpointError as error:
            raise CheckpointError(
                "control.field_problem", field="training.resume_from_checkpoint", error=error
            ) from None
