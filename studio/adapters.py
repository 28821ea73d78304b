"""Finding LoRA adapters (every finished run's, plus folders a user names) and checking them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from studio.errors import StudioError


class AdapterError(StudioError):
    """An adapter folder that is missing, incomplete or does not fit the base model."""


@dataclass(frozen=True)
class AdapterInfo:
    name: str
    path: str
    base_model: str | None
    rank: int | None
    reward_model: bool = False  # an rm run's adapter: it has a value head, and scores texts


@dataclass
class AdapterScan:
    """The usable adapters of a runs folder, newest first, and why others were left out."""

    adapters: list[AdapterInfo] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # why each was left out (an AdapterError's Message)


def read_adapter(path: str | Path, name: str | None = None) -> AdapterInfo:
    folder = Path(path).expanduser()
    config_file = folder / "adapter_config.json"
    if not config_file.is_file():
        raise AdapterError("adapters.no_config", folder=folder)
    if not any((folder / f).is_file() for f in ("adapter_model.safetensors", "adapter_model.bin")):
        raise AdapterError("adapters.no_weights", folder=folder)
    config = _read_json(config_file)
    default_name = (
        folder.parent.name if folder.name == "adapter" else folder.name
    )  # a run's adapter is named after the run
    return AdapterInfo(
        name=name or default_name,
        path=str(folder),
        base_model=config.get("base_model_name_or_path"),
        rank=config.get("r"),
        reward_model=(folder / "value_head.safetensors").is_file() and _trained_stage(folder) == "rm",
    )


def _trained_stage(folder: Path) -> str | None:
    """training.stage of the run that saved the adapter (its studio_config.yaml), None for a foreign adapter."""
    import yaml

    try:
        saved = yaml.safe_load((folder / "studio_config.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    training = saved.get("training") if isinstance(saved, dict) else None
    return training.get("stage", "sft") if isinstance(training, dict) else None


def _read_json(file: Path) -> dict:
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise AdapterError(
            "adapters.config_bad_json", file=file, line=error.lineno, column=error.colno, error=error.msg
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise AdapterError("adapters.config_unreadable", file=file, error=error) from None
    if not isinstance(value, dict):
        raise AdapterError("adapters.config_not_object", file=file)
    return value


def scan_adapters(runs_dir: str | Path, known: dict | None = None) -> AdapterScan:
    """Adapters of finished runs, newest first; a damaged one is reported, never fatal to the list.

    `known` keeps what was read, by file and modification time, so a caller that scans often
    (every page that opens) reads only adapters that are new or changed.
    """
    scan, known = AdapterScan(), {} if known is None else known
    runs = Path(runs_dir)
    if not runs.is_dir():
        return scan
    found = []
    for config_file in runs.glob("*/adapter/adapter_config.json"):
        try:
            stamp = (config_file, config_file.stat().st_mtime_ns)
            if stamp not in known:
                known[stamp] = read_adapter(config_file.parent)
            found.append((stamp[1], known[stamp]))
        except AdapterError as error:
            scan.problems.append(error.message)
        except OSError as error:
            scan.problems.append(str(error))
    scan.adapters = [info for _, info in sorted(found, key=lambda item: item[0], reverse=True)]
    return scan
