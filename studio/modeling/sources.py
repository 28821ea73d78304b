"""Where a model's files come from — the embedded default, a folder, or a hub id — decided without torch, so the
supervisor can check a model before any worker starts (studio/config/names.py says what a name is)."""

from __future__ import annotations

from collections.abc import Callable

from studio.config import ModelConfig
from studio.config.names import ModelSource, model_source
from studio.errors import StudioError
from studio.locales import Message, say
from studio.modeling.embedded import embedded_model_dir
from studio.modeling.from_modelscope import fetch


class ModelLoadError(StudioError):
    """A model or tokenizer that cannot be found or loaded as configured."""


def resolve_model_path(config: ModelConfig, progress: Callable[[Message], None] = print) -> str:
    """What transformers loads: the converted embedded model's folder, a local folder, a Hugging Face hub id, or
    the folder a ModelScope id was downloaded to."""
    source = model_source(config.name_or_path)
    if source.kind == "embedded":
        return str(embedded_model_dir(progress))
    if source.path is None and config.hub == "modelscope":  # fetched into ModelScope's cache, then a folder
        progress(say("modeling.modelscope_fetching", repo_id=source.name))
        source = ModelSource("path", source.name, fetch(source.name, "model", ModelLoadError))
    if source.path is None:  # a hub id: transformers resolves it from the cache or the hub
        return source.name
    if not source.path.exists():
        raise ModelLoadError("modeling.model_folder_missing", name=config.name_or_path)
    if not (source.path / "config.json").is_file():
        raise ModelLoadError("modeling.not_a_model_folder", path=source.path)
    return str(source.path)
