"""Finding LoRA adapters (every finished run's, plus folders a user names) and checking them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


class AdapterError(ValueError):
    pass


@dataclass(frozen=True)
class AdapterInfo:
    name: str
    path: str
    base_model: str | None
    rank: int | None


def read_adapter(path: str | Path, name: str | None = None) -> AdapterInfo:
    folder = Path(path).expanduser()
    config_file = folder / "adapter_config.json"
    if not config_file.is_file():
        raise AdapterError(f"{folder} is not a LoRA adapter folder: it has no adapter_config.json.")
    if not any((folder / f).is_file() for f in ("adapter_model.safetensors", "adapter_model.bin")):
        raise AdapterError(f"{folder} has adapter_config.json but no adapter weights (adapter_model.safetensors).")
    config = json.loads(config_file.read_text())
    default_name = folder.parent.name if folder.name == "adapter" else folder.name  # a run's adapter is named after the run
    return AdapterInfo(
        name=name or default_name,
        path=str(folder),
        base_model=config.get("base_model_name_or_path"),
        rank=config.get("r"),
    )


def find_adapters(runs_dir: str | Path, extra: list[str] | None = None) -> list[AdapterInfo]:
    """Adapters of finished runs (newest first), then the extra folders given."""
    found = []
    runs = Path(runs_dir)
    if runs.is_dir():
        folders = sorted(runs.glob("*/adapter/adapter_config.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        found += [read_adapter(p.parent) for p in folders]
    for path in extra or []:
        found.append(read_adapter(path))
    return found
