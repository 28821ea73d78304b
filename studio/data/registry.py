"""dataset_info.json: the dataset registry, in LLaMA-Factory's format so existing registries work unchanged.

A bad entry makes only itself unusable: the registry lists it, and using it raises the entry's
problem. What an entry holds (its kind) follows from the entry alone, so a mismatch with the
training stage is refused before any file is read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError, field_validator, model_validator

from studio.config.base import describe_validation_error
from studio.config.names import is_hub_id
from studio.errors import StudioError
from studio.locales import Joined, Message, say

REGISTRY_FILE = "dataset_info.json"

DataKind = Literal["sft", "pairwise", "kto", "text"]

_DEFAULT_COLUMNS = {
    "alpaca": {"prompt": "instruction", "query": "input", "response": "output", "history": None, "system": None},
    "sharegpt": {"messages": "conversations", "system": None, "tools": None},
    "openai": {"messages": "messages", "system": None, "tools": None},
}
# OpenAI's chat schema spells roles its own way; tool results come as role "tool".
_OPENAI_TAGS = {
    "role_tag": "role",
    "content_tag": "content",
    "user_tag": "user",
    "assistant_tag": "assistant",
    "observation_tag": "tool",
}
_REFUSED_MEDIA = ("videos", "audios")  # pictures ("images") are read: studio.data.pictures
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SPLIT = re.compile(r"^[\w.\-\[\]:%+ ]+$")

PlaceKind = Literal["file", "hub", "inner"]
Hub = Literal["huggingface", "modelscope"]  # model.hub's choices


class DataError(StudioError):
    """Data that cannot be trained on; the message says which file or dataset, where, and what to do."""

    @classmethod
    def said(cls, message: Message) -> DataError:
        """The error that says `message`: a problem found before it is raised (DatasetSpec.unsupported, ...)."""
        return cls(message.key, **message.args)


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
    om_hub_url: str | None = None
    script_url: str | None = None
    cloud_file_name: str | None = None
    subset: str | None = None
    split: str = "train"
    folder: str | None = None
    formatting: Literal["alpaca", "sharegpt", "openai"] = "alpaca"
    ranking: bool = False
    num_samples: int | None = None
    columns: dict[str, str | None] = {}
    tags: DatasetTags = DatasetTags()
    _given_columns: dict[str, Any] = PrivateAttr(default_factory=dict)

    @field_validator("hf_hub_url", "ms_hub_url", "om_hub_url")
    @classmethod
    def _hub_id(cls, value: str | None) -> str | None:
        # A bare name such as 'json' or 'text' would be one of the datasets library's own loaders, which read
        # whatever folder 'folder' names: local files are registered with 'file_name' instead.
        if value is not None and not is_hub_id(value, owner_required=True):
            raise ValueError(
                f"'{value}' is not a hub dataset id; write it as owner/name (e.g. llamafactory/alpaca_gpt4_zh), or "
                "register a local file with 'file_name'"
            )
        return value

    @field_validator("folder")
    @classmethod
    def _inner_folder(cls, value: str | None) -> str | None:
        """A folder inside the hub dataset's repository: relative, and never climbing out of it."""
        if value is not None:
            parts = value.replace("\\", "/").split("/")
            if value.startswith(("/", "~")) or ".." in parts or _CONTROL.search(value):
                raise ValueError(
                    f"'{value}' must be a folder inside the hub dataset, e.g. data/zh (no '..', not absolute)"
                )
        return value

    @field_validator("subset", "split")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        """A configuration or split name of the hub dataset (e.g. 'zh', 'train[:10%]'), never a path."""
        if value is not None and not _SPLIT.match(value):
            raise ValueError(f"'{value}' is not a subset or split name: use letters, digits and _ - . [ ] : % +")
        return value

    @model_validator(mode="before")
    @classmethod
    def _openai_tags(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and raw.get("formatting") == "openai":
            given = raw.get("tags")
            raw = {**raw, "tags": {**_OPENAI_TAGS, **(given if isinstance(given, dict) else {})}}
        return raw

    @model_validator(mode="after")
    def _complete(self) -> DatasetSpec:
        if not any(
            (self.file_name, self.hf_hub_url, self.ms_hub_url, self.om_hub_url, self.script_url, self.cloud_file_name)
        ):
            raise ValueError("needs 'file_name' (a file or folder in the dataset dir) or 'hf_hub_url'")
        self._given_columns = dict(self.columns)
        self.columns = {**_DEFAULT_COLUMNS[self.formatting], **self.columns}
        return self

    def places(self) -> list[tuple[str, str, PlaceKind]]:
        """Every (field, value, kind) of this entry that names a place: 'file' relative to the dataset folder, 'hub'
        a hub id the datasets library reads as a local folder when one of that name exists, 'inner' a folder inside
        the hub dataset. Subsets and splits are names, checked by the validators above."""
        kinds: dict[str, PlaceKind] = {
            "file_name": "file",
            "script_url": "file",
            "cloud_file_name": "file",
            "hf_hub_url": "hub",
            "ms_hub_url": "hub",
            "om_hub_url": "hub",
            "folder": "inner",
        }
        return [(name, value, kind) for name, kind in kinds.items() if (value := getattr(self, name))]

    def hub_source(self, hub: Hub = "huggingface") -> tuple[Hub, str]:
        """(hub, id) a hub entry loads from, as LLaMA-Factory picks with USE_MODELSCOPE_HUB (here model.hub):
        ModelScope's id when the hub is ModelScope or the entry has no Hugging Face id, else the Hugging Face id."""
        if self.ms_hub_url and (hub == "modelscope" or not self.hf_hub_url):
            return "modelscope", self.ms_hub_url
        return "huggingface", self.hf_hub_url or ""

    def column(self, role: str) -> str | None:
        return self.columns.get(role)

    @property
    def kind(self) -> DataKind:
        """What the rows are for: supervised chat (sft), preference pairs, KTO feedback or pretraining text."""
        given = self._given_columns
        if self.ranking:
            return "pairwise"
        if given.get("kto_tag"):
            return "kto"
        if (self.file_name or "").endswith(".txt"):
            return "text"
        if self.formatting == "alpaca" and given.get("prompt") and not given.get("response"):
            return "text"  # LLaMA-Factory's pretraining entries name only the text column, as "prompt"
        return "sft"

    @property
    def text_column(self) -> str:
        return self._given_columns.get("prompt") or "text"

    def unsupported(self) -> Message | None:
        """Why this entry cannot be read at all, and what to use instead; None when it can."""
        media = [c for c in _REFUSED_MEDIA if self._given_columns.get(c)]
        if media:
            return say("data.multimodal_dataset", name=self.name, media="/".join(media))
        if self._given_columns.get("images"):
            if self.kind == "text":  # pretraining text: sft, dpo and kto data take pictures
                return say("data.pictures_stages", name=self.name, stage="pt")
            if not self.file_name:  # a hub's pictures are bytes, or paths on someone else's machine
                return say("data.pictures_from_hub", name=self.name)
        if self.file_name:
            return None
        if self.script_url:
            return say("data.script_dataset", name=self.name)
        if self.cloud_file_name:
            return say("data.cloud_dataset", name=self.name)
        if not self.hf_hub_url and not self.ms_hub_url:
            return say("data.modelers_dataset", name=self.name)
        return None


class Registry(Mapping[str, DatasetSpec]):
    """The entries of one dataset_info.json by name; a broken entry is listed but raises its problem when used."""

    def __init__(self, path: Path, specs: dict[str, DatasetSpec], problems: dict[str, Message], names: list[str]):
        self.path, self.specs, self.problems, self._names = path, specs, problems, names

    def __getitem__(self, name: str) -> DatasetSpec:
        if name in self.problems:
            raise DataError.said(self.problems[name])
        return self.specs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def read_registry_json(dataset_dir: Path) -> dict:
    """The raw registry object, or a DataError that names the folder, the file or the line."""
    path = Path(dataset_dir) / REGISTRY_FILE
    if not Path(dataset_dir).is_dir():
        raise DataError("data.folder_not_found", path=dataset_dir, registry=REGISTRY_FILE)
    if not path.is_file():
        raise DataError("data.registry_not_found", path=path, registry=REGISTRY_FILE)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(
            "data.registry_syntax", path=path, line=error.lineno, column=error.colno, error=error.msg
        ) from None
    if not isinstance(raw, dict):
        raise DataError("data.registry_not_object", path=path)
    return raw


def load_registry(dataset_dir: Path) -> Registry:
    path = Path(dataset_dir) / REGISTRY_FILE
    raw = read_registry_json(dataset_dir)
    specs, problems = {}, {}
    for name, entry in raw.items():
        try:
            specs[name] = parse_entry(path, name, entry)
        except DataError as error:
            problems[name] = error.message
    return Registry(path, specs, problems, list(raw))


def parse_entry(path: Path, name: str, entry: object) -> DatasetSpec:
    if not isinstance(entry, dict):
        raise DataError("data.entry_not_object", path=path, name=name)
    try:
        return DatasetSpec.model_validate({**entry, "name": name})
    except ValidationError as error:
        problems = Joined("list.separator", describe_validation_error(error))  # pydantic's own reasons are English
        raise DataError("data.entry_invalid", path=path, name=name, problems=problems) from None


def resolve_specs(dataset_dir: Path, names: list[str]) -> list[DatasetSpec]:
    """The entries named, in order; unknown, broken and unreadable entries raise a DataError naming them."""
    registry = load_registry(dataset_dir)
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise DataError(
            "data.dataset_unknown",
            names=", ".join(repr(n) for n in unknown),
            path=Path(dataset_dir) / REGISTRY_FILE,
            known=", ".join(sorted(registry)) or say("data.none_known"),
        )
    specs = [registry[n] for n in names]
    for spec in specs:
        if problem := spec.unsupported():
            raise DataError.said(problem)
    return specs
