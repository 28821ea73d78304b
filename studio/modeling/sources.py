"""Where a model's files come from — the embedded default, a folder, or a hub id — decided without torch, so the
supervisor can check a model before any worker starts (studio/config/names.py says what a name is)."""

from __future__ import annotations

from studio.config import ModelConfig
from studio.config.names import model_source
from studio.errors import StudioError
from studio.modeling.embedded import embedded_model_dir


class ModelLoadError(StudioError):
    """A model or tokenizer that cannot be found or loaded as configured."""


def resolve_model_path(config: ModelConfig, progress=print) -> str:
    """What transformers loads: the converted embedded model's folder, a local folder, or a hub id."""
    source = model_source(config.name_or_path)
    if source.kind == "embedded":
        return str(embedded_model_dir(progress))
    if source.kind == "hub":
        return source.name  # transformers resolves it from the cache or the hub
    if not source.path.exists():
        raise ModelLoadError(
            f"Model folder {config.name_or_path} not found. Give a folder saved with save_pretrained, or a hub id "
            "(owner/name)."
        )
    if not (source.path / "config.json").is_file():
        raise ModelLoadError(f"{source.path} is not a model folder: it has no config.json.")
    return str(source.path)
