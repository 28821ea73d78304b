"""dataset_info.json: the dataset registry, in LLaMA-Factory's format so existing registries work unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from studio.config.base import describe_validation_error
from studio.errors import StudioError

REGISTRY_FILE = "dataset_info.json"

_DEFAULT_COLUMNS = {
    "alpaca": {"prompt": "instruction", "query": "input", "response": "output", "history": None, "system": None},
    "sharegpt": {"messages": "conversations", "system": None, "tools": None},
}


class DataError(StudioError):
    """Data that cannot be trained on; the message says which file or dataset, where, and what to do."""


class DatasetTags(BaseModel):
    """How sharegpt messages spell roles. Defaults are sharegpt's own (from/value, human/gpt)."""

    model_config = ConfigDict(extra="ignore")
    role_tag: str = "from"
    content_tag: str = "value"
    user_tag: str = "human"
    assistant_tag: str = "gpt"
    observation_tag: str = "observation"
    function_tag: str = "function_call"
    system_tag: str = "system"


class DatasetSpec(BaseModel):
    """One registry entry. Unknown keys (LLaMA-Factory grows new ones) are ignored, not refused."""

    model_config = ConfigDict(extra="ignore")
    name: str = ""
    file_name: str | None = None
    hf_hub_url: str | None = None
    ms_hub_url: str | None = None
    subset: str | None = None
    split: str = "train"
    folder: str | None = None
    formatting: Literal["alpaca", "sharegpt"] = "alpaca"
    ranking: bool = False
    num_samples: int | None = None
    columns: dict[str, str | None] = {}
    tags: DatasetTags = DatasetTags()

    @model_validator(mode="after")
    def _complete(self) -> "DatasetSpec":
        if not (self.file_name or self.hf_hub_url or self.ms_hub_url):
            raise ValueError("needs 'file_name' (a file or folder in the dataset dir) or 'hf_hub_url'")
        self.columns = {**_DEFAULT_COLUMNS[self.formatting], **self.columns}
        return self

    def column(self, role: str) -> str | None:
        return self.columns.get(role)


def load_registry(dataset_dir: Path) -> dict[str, DatasetSpec]:
    path = Path(dataset_dir) / REGISTRY_FILE
    if not Path(dataset_dir).is_dir():
        raise DataError(f"Dataset folder not found: {dataset_dir}. Set data.dataset_dir to a folder holding {REGISTRY_FILE}.")
    if not path.is_file():
        raise DataError(f"{path} not found. A dataset folder needs a {REGISTRY_FILE} registry naming its files.")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{path} line {error.lineno} column {error.colno}: {error.msg}. Fix the JSON syntax there.") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: the top level must be an object mapping dataset names to entries.")
    return {name: _parse_entry(path, name, entry) for name, entry in raw.items()}


def _parse_entry(path: Path, name: str, entry: object) -> DatasetSpec:
    if not isinstance(entry, dict):
        raise DataError(f"{path}: entry '{name}' must be an object like {{\"file_name\": \"my_data.json\"}}.")
    try:
        return DatasetSpec.model_validate({**entry, "name": name})
    except ValidationError as error:
        problems = "; ".join(describe_validation_error(error))
        raise DataError(f"{path}: entry '{name}' is invalid: {problems}") from None


def resolve_specs(dataset_dir: Path, names: list[str]) -> list[DatasetSpec]:
    registry = load_registry(dataset_dir)
    unknown = [n for n in names if n not in registry]
    if unknown:
        known = ", ".join(sorted(registry)) or "(none)"
        raise DataError(
            f"Unknown dataset {', '.join(repr(n) for n in unknown)}: not in {Path(dataset_dir) / REGISTRY_FILE}. "
            f"Known datasets: {known}. Add an entry there or fix the name."
        )
    return [registry[n] for n in names]
