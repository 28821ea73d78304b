"""Where the studio keeps things on disk."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_DATA_DIR = REPO_ROOT / "data"


def cache_dir() -> Path:
    """Converted models and other derived files; QLORA_STUDIO_CACHE overrides."""
    override = os.environ.get("QLORA_STUDIO_CACHE")
    base = Path(override) if override else Path.home() / ".cache" / "qlora-studio"
    base.mkdir(parents=True, exist_ok=True)
    return base


def resolve_dataset_dir(dataset_dir: str, base: Path | None = None) -> Path:
    """A relative dataset_dir that does not exist from `base` (default: here) falls back to the bundled data/."""
    path = Path(dataset_dir).expanduser()
    if path.is_absolute():
        return path
    local = base / path if base is not None else path
    if local.exists():
        return local
    bundled = REPO_ROOT / path
    return bundled if bundled.exists() else local
