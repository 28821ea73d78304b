"""Finding what runs trained (every finished run's adapter or whole model, plus folders a user names) and checking it.

A lora or oft run leaves a peft adapter (run/adapter/); a full or freeze run a whole transformers model (run/model/).
Both are listed under the run's name; `AdapterInfo.whole_model` tells them apart."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from studio.config.finetuning import WHOLE_MODEL_METHODS
from studio.errors import StudioError

RESULT_FOLDERS = ("adapter", "model")  # what a run leaves: a peft adapter, or a whole model (full, freeze)


class AdapterError(StudioError):
    """An adapter folder that is missing, incomplete or does not fit the base model."""


@dataclass(frozen=True)
class AdapterInfo:
    name: str
    path: str
    base_model: str | None
    rank: int | None
    reward_model: bool = False  # an rm run's adapter: it has a value head, and scores texts
    method: str = "lora"  # finetuning.method that made it: lora, oft (peft adapters), full, freeze (whole models)

    @property
    def whole_model(self) -> bool:
        """A whole model (a full or freeze run's run/model/), not a peft adapter to put on a base."""
        return self.method in WHOLE_MODEL_METHODS


@dataclass
class AdapterScan:
    """The usable adapters of a runs folder, newest first, and why others were left out."""

    adapters: list[AdapterInfo] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # why each was left out (an AdapterError's Message)


def read_adapter(path: str | Path, name: str | None = None) -> AdapterInfo:
    """A peft adapter folder, or a whole model folder (a full or freeze run's run/model/, or any transformers model
    folder); AdapterError when it is neither or incomplete."""
    folder = Path(path).expanduser()
    default_name = folder.parent.name if folder.name in RESULT_FOLDERS else folder.name  # a run's, after the run
    if not (folder / "adapter_config.json").is_file() and (folder / "config.json").is_file():
        return _read_whole_model(folder, name or default_name)
    config_file = folder / "adapter_config.json"
    if not config_file.is_file():
        raise AdapterError("adapters.no_config", folder=folder)
    if not any((folder / f).is_file() for f in ("adapter_model.safetensors", "adapter_model.bin")):
        raise AdapterError("adapters.no_weights", folder=folder)
    config = _read_json(config_file)
    return AdapterInfo(
        name=name or default_name,
        path=str(folder),
        base_model=config.get("base_model_name_or_path"),
        rank=config.get("r"),
        reward_model=(folder / "value_head.safetensors").is_file() and _trained_stage(folder) == "rm",
        method="oft" if str(config.get("peft_type", "")).upper() == "OFT" else "lora",
    )


def read_peft_adapter(path: str | Path, name: str | None = None) -> AdapterInfo:
    """An adapter that goes onto a base model (lora.init_adapter, a reward model): a whole model is refused."""
    info = read_adapter(path, name)
    if info.whole_model:
        raise AdapterError("adapters.whole_model_not_adapter", folder=info.path, method=info.method)
    return info


def _read_whole_model(folder: Path, name: str) -> AdapterInfo:
    """A full or freeze run's model folder (its studio_config.yaml names the base and the method); a model folder
    from elsewhere counts as fully trained, on an unknown base."""
    _read_json(folder / "config.json")  # a damaged config is said here, not when the model loads
    if not any(folder.glob("*.safetensors")):
        raise AdapterError("adapters.no_model_weights", folder=folder)
    saved = _saved_config(folder)
    model, finetuning = saved.get("model"), saved.get("finetuning")
    method = finetuning.get("method") if isinstance(finetuning, dict) else None
    return AdapterInfo(
        name=name,
        path=str(folder),
        base_model=model.get("name_or_path") if isinstance(model, dict) else None,
        rank=None,
        method=method if method in WHOLE_MODEL_METHODS else "full",
    )


def _saved_config(folder: Path) -> dict:
    """The studio_config.yaml of the run that saved the folder, {} for a foreign adapter or model."""
    import yaml

    try:
        saved = yaml.safe_load((folder / "studio_config.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return saved if isinstance(saved, dict) else {}


def _trained_stage(folder: Path) -> str | None:
    """training.stage of the run that saved the adapter (its studio_config.yaml), None for a foreign adapter."""
    training = _saved_config(folder).get("training")
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
    """Adapters and whole models of finished runs, newest first; a damaged one is reported, never fatal to the list.

    `known` keeps what was read, by file and modification time, so a caller that scans often
    (every page that opens) reads only adapters that are new or changed.
    """
    scan, known = AdapterScan(), {} if known is None else known
    runs = Path(runs_dir)
    if not runs.is_dir():
        return scan
    found = []
    # a run folder holds one of the two, written whole by the worker (staged, then renamed)
    for config_file in [*runs.glob("*/adapter/adapter_config.json"), *runs.glob("*/model/config.json")]:
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
