"""Adding a dataset to a registry: detect a file's format, then store it and its entry.

For a UI: `detect(uploaded_path)` proposes an entry (format, column mapping, sample rows, row
count) for the user to confirm or edit; `register(dataset_dir, name, uploaded_path, entry)`
converts every row first (a bad file is refused with file, line and fix, nothing written), then
stores the file in the dataset dir and adds the entry to dataset_info.json atomically, keeping
the old registry as dataset_info.json.bak. `register_hub` does the same for a hub dataset id.

A dataset of pictures comes as a zip of its data file and pictures (studio.data.image_sets): the pictures the data
names are checked where they were unpacked, then moved into the dataset folder by their paths in the data, beside
the data file, as LLaMA-Factory lays out its mllm_demo. An uploaded dataset's pictures never lie outside the
dataset folder: a path that is absolute or climbs out is refused before any file is opened.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from studio.config.names import is_hub_id
from studio.data.examples import DatasetExamples, example_pictures, map_turns, to_examples
from studio.data.image_sets import ARCHIVE_SUFFIX, is_image_set, open_image_set, unpack
from studio.data.pictures import has_pictures, record_pictures
from studio.data.readers import SUPPORTED_SUFFIXES, Records, read_hub, read_located
from studio.data.registry import REGISTRY_FILE, DataError, DatasetSpec, load_registry, parse_entry
from studio.locales import Message, say

if TYPE_CHECKING:
    from studio.data.formats import Message as Turn

MAX_UPLOAD_BYTES = 200 * 2**20
BACKUP_SUFFIX = ".bak"
DetectedFormat = Literal["alpaca", "sharegpt", "openai", "pairwise", "kto", "text"]

_MESSAGE_COLUMNS = ("messages", "conversations", "conversation", "dialog", "chat")
_PROMPT_COLUMNS = ("instruction", "prompt", "question", "query", "input")
_RESPONSE_COLUMNS = ("output", "response", "answer", "completion", "target")
_QUERY_COLUMNS = ("input", "context")
_TEXT_COLUMNS = ("text", "content", "document")
_USER_ROLES, _ASSISTANT_ROLES = ("human", "user"), ("gpt", "assistant", "bot", "model")


@dataclass
class Proposal:
    """What `detect` found; `entry` is the dataset_info.json entry to confirm or edit (no file_name)."""

    file_name: str
    format: DetectedFormat
    entry: dict
    columns: list[str]
    sample_rows: list[dict]
    num_rows: int
    note: Message | None = None  # what could not be told and needs the user's mapping
    pictures: int = 0  # an archive's pictures (studio.data.image_sets)


@dataclass
class Registered:
    spec: DatasetSpec
    examples: DatasetExamples = field(repr=False)


def detect(path: str | Path, rows: int = 3) -> Proposal:
    """Read an uploaded file and propose its format and column mapping; DataError when it cannot be read."""
    path = Path(path)
    _check_size(path.stat().st_size, path.name)
    if is_image_set(path):
        return _detect_image_set(path, rows)
    try:
        _, records, _ = read_located(path)
    except DataError as error:  # named as the user knows it, not by the upload's temporary folder
        raise _named_as(error, path, path.name) from None
    if not records:
        raise DataError("data.upload_no_examples", file=path.name)
    return _propose(path.name, records, rows, text_file=path.suffix == ".txt")


def _detect_image_set(path: Path, rows: int) -> Proposal:
    image_set = open_image_set(path, path.name)
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / image_set.data_name
        unpack(image_set, Path(folder), data, pictures=False)
        try:
            _, records, _ = read_located(data)
        except DataError as error:  # named as the archive names it, not by the temporary folder it was read from
            raise _named_as(error, data, image_set.data_name) from None
    if not records:
        raise DataError("data.upload_no_examples", file=image_set.data_name)
    proposal = _propose(image_set.data_name, records, rows)
    proposal.pictures = len(image_set.pictures)
    return proposal


def register(
    dataset_dir: str | Path, name: str, source: str | Path | bytes, entry: dict, file_name: str | None = None
) -> Registered:
    """Store `source` (a path, or bytes with `file_name`) as NAME.SUFFIX in the dataset dir and add its entry."""
    dataset_dir = Path(dataset_dir)
    display = file_name or (Path(source).name if not isinstance(source, bytes) else "")
    suffix = Path(display).suffix.lower()
    if suffix == ARCHIVE_SUFFIX and not isinstance(source, bytes):
        return register_image_set(dataset_dir, name, Path(source), entry, display)
    if suffix not in SUPPORTED_SUFFIXES:
        suffixes = ", ".join((*SUPPORTED_SUFFIXES, ARCHIVE_SUFFIX))
        raise DataError("data.upload_type_unsupported", file=display, suffixes=suffixes)
    _check_name(dataset_dir, name)
    target = dataset_dir / f"{name}{suffix}"
    if target.exists():
        raise DataError("data.upload_target_exists", path=target)
    _check_size(len(source) if isinstance(source, bytes) else Path(source).stat().st_size, display)
    with tempfile.NamedTemporaryFile(dir=dataset_dir, suffix=suffix, delete=False) as handle:
        staged = Path(handle.name)
        handle.write(source if isinstance(source, bytes) else Path(source).read_bytes())
    os.chmod(staged, new_file_mode())  # tempfile makes its files private; a dataset is read by whoever reads the folder
    try:
        spec = parse_entry(dataset_dir / REGISTRY_FILE, name, {**_clean(entry), "file_name": target.name})
        records = Records()
        records.add(display, *read_located(staged))
        examples = _validated(spec, records, dataset_dir)
        os.replace(staged, target)
    except DataError as error:
        raise _named_as(error, staged, display) from None
    finally:
        staged.unlink(missing_ok=True)
    try:
        _write_entry(dataset_dir, name, {**_clean(entry), "file_name": target.name})
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return Registered(spec, examples)


def register_hub(
    dataset_dir: str | Path,
    name: str,
    hub_id: str,
    entry: dict | None = None,
    subset: str | None = None,
    split: str = "train",
    probe_rows: int = 200,
) -> Registered:
    """Add a Hugging Face hub dataset after loading its first rows; DataError naming the cause when offline."""
    dataset_dir = Path(dataset_dir)
    _check_name(dataset_dir, name)
    if not is_hub_id(hub_id, owner_required=True):
        raise DataError("data.hub_id_invalid", hub_id=hub_id)
    _check_hub(hub_id)
    source = {"hf_hub_url": hub_id, "split": split, **({"subset": subset} if subset else {})}
    probe = parse_entry(dataset_dir / REGISTRY_FILE, name, {**(entry or {}), **source})
    rows = read_hub(probe, limit=probe_rows)
    if not rows:
        raise DataError("data.hub_no_rows", hub_id=hub_id, split=split)
    if entry is None:
        entry = _propose(hub_id, rows, 0).entry
    full = {**_clean(entry), **source}
    spec = parse_entry(dataset_dir / REGISTRY_FILE, name, full)
    records = Records()
    records.add(hub_id, "example", rows)
    examples = _validated(spec, records)
    _write_entry(dataset_dir, name, full)
    return Registered(spec, examples)


def _check_hub(hub_id: str) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        HfApi().dataset_info(hub_id, timeout=10)
    except RepositoryNotFoundError:
        raise DataError("data.hub_not_found", hub_id=hub_id) from None
    except Exception as error:  # no network, DNS, proxy or TLS failures all look different
        raise DataError("data.hub_unreachable", hub_id=hub_id, error_type=type(error).__name__) from None


def _check_size(size: int, display: str) -> None:
    if size > MAX_UPLOAD_BYTES:
        raise DataError("data.upload_too_large", file=display, size=size / 2**20, limit=MAX_UPLOAD_BYTES // 2**20)


def _check_name(dataset_dir: Path, name: str) -> None:
    if not re.fullmatch(r"\w[\w.\-]{0,127}", name or ""):
        raise DataError("data.name_invalid", name=name)
    if name.casefold().startswith(Path(REGISTRY_FILE).stem):  # the upload would become the registry (or its backup)
        raise DataError("data.name_reserved", name=name)
    if (dataset_dir / REGISTRY_FILE).is_file() and name in load_registry(dataset_dir):
        raise DataError("data.name_taken", name=name, path=dataset_dir / REGISTRY_FILE)


def _named_as(error: DataError, path: Path, name: str) -> DataError:
    """The same error with `path` (an upload's temporary file) shown as `name`, the file the user knows; the path
    may also sit inside a reader's own error text."""

    def renamed(value: object) -> object:
        if isinstance(value, Path) and value == path:
            return name
        return value.replace(str(path), name) if type(value) is str else value  # a Message keeps its language

    return DataError(error.message.key, **{key: renamed(value) for key, value in error.message.args.items()})


def _clean(entry: dict) -> dict:
    """The user's entry without source keys: the file or hub id comes from what is registered."""
    sources = ("file_name", "hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name")
    return {key: value for key, value in entry.items() if key not in sources}


def register_image_set(dataset_dir: Path, name: str, archive: Path, entry: dict, display: str) -> Registered:
    """A zip of a data file and its pictures: unpacked into a folder of its own in the dataset folder, checked
    there, then the data stored as NAME.SUFFIX and its pictures moved beside it; nothing is left on a refusal."""
    _check_name(dataset_dir, name)
    _check_size(archive.stat().st_size, display)
    image_set = open_image_set(archive, display)
    target = dataset_dir / f"{name}{Path(image_set.data_name).suffix.lower()}"
    if target.exists():
        raise DataError("data.upload_target_exists", path=target)
    full = {**_clean(entry), "file_name": target.name}
    spec = parse_entry(dataset_dir / REGISTRY_FILE, name, full)
    staging, moved = Path(tempfile.mkdtemp(dir=dataset_dir, prefix=".upload-")), []
    try:
        staged = staging / target.name
        unpack(image_set, staging, staged)
        records = Records()
        records.add(image_set.data_name, *read_located(staged))
        examples = _validated(spec, records, staging)
        for source, destination in _picture_moves(examples, staging, dataset_dir):
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, destination)
            moved.append(destination)
        os.replace(staged, target)
        moved.append(target)
        _write_entry(dataset_dir, name, full)
    except BaseException as error:
        for path in moved:
            path.unlink(missing_ok=True)
        if isinstance(error, DataError):
            raise _named_as(error, staging / target.name, image_set.data_name) from None
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Registered(spec, _moved(examples, staging, dataset_dir))


def _moved(examples: DatasetExamples, staging: Path, dataset_dir: Path) -> DatasetExamples:
    """The examples checked where they were unpacked, their pictures named where they now are (every picture was
    checked there; read again from the dataset folder, the same bytes would be checked again)."""
    inside = staging.resolve()

    def placed(turn: Turn) -> Turn:
        if not turn.get("images"):
            return turn
        paths = [(dataset_dir / Path(path).relative_to(inside)).resolve() for path in turn["images"]]
        return {**turn, "images": [str(path) for path in paths]}

    moved = [map_turns(example, placed) for example in examples.examples]
    return replace(examples, examples=moved)


def _picture_moves(examples: DatasetExamples, staging: Path, dataset_dir: Path) -> list[tuple[Path, Path]]:
    """(unpacked, destination) of every picture the data names, by its path relative to the data file; a picture
    already in the dataset folder with the same bytes stays as it is, one with other bytes refuses the upload."""
    moves, root = {}, dataset_dir.resolve()
    for picture in {path for example in examples.examples for path in example_pictures(example)}:
        relative = Path(picture).relative_to(staging.resolve())  # inside: _check_upload_pictures saw to it
        destination = dataset_dir / relative
        if not destination.resolve().is_relative_to(root):  # a link in the dataset folder leading elsewhere
            raise DataError("data.upload_picture_elsewhere", path=destination)
        if destination.exists():
            if destination.read_bytes() != Path(picture).read_bytes():
                raise DataError("data.upload_picture_exists", path=destination)
            continue
        moves[Path(picture)] = destination
    return list(moves.items())


def _validated(spec: DatasetSpec, records: Records, media_dir: Path | None = None) -> DatasetExamples:
    if problem := spec.unsupported():
        raise DataError.said(problem)
    if has_pictures(spec):
        _check_upload_pictures(spec, records)
    return to_examples(spec, records, media_dir=media_dir)


def _check_upload_pictures(spec: DatasetSpec, records: Records) -> None:
    """An upload's pictures are in the dataset folder (or come with it): relative paths that never climb out."""
    for _, where, raws in record_pictures(spec, records):
        for raw in raws:
            path = Path(raw)
            if path.is_absolute() or raw.startswith("~") or ".." in path.parts or "\\" in raw:
                raise DataError("data.upload_picture_outside", where=where, picture=raw)


def _write_entry(dataset_dir: Path, name: str, entry: dict) -> None:
    """Add one entry: the new registry is written beside the old one, which is kept as .bak, then swapped in."""
    path = dataset_dir / REGISTRY_FILE
    registry = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    registry[name] = entry
    with tempfile.NamedTemporaryFile("w", dir=dataset_dir, suffix=".json", delete=False, encoding="utf-8") as handle:
        json.dump(registry, handle, ensure_ascii=False, indent=2)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(handle.name, stat.S_IMODE(path.stat().st_mode) if path.is_file() else new_file_mode())
    if path.is_file():
        shutil.copy2(path, path.with_name(REGISTRY_FILE + BACKUP_SUFFIX))
    os.replace(handle.name, path)


def new_file_mode() -> int:
    """The mode open() gives a new file in this process: 0o666 less the umask (read from /proc, since os.umask can
    only be read by setting it, which other threads would see)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            umask = next(int(line.split()[1], 8) for line in status if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        umask = 0o022
    return 0o666 & ~umask


def _propose(file_name: str, records: list[dict], rows: int, text_file: bool = False) -> Proposal:
    columns = sorted(set().union(*(r.keys() for r in records[:100])))
    first = records[0]
    fmt: DetectedFormat = "text"
    entry, note = {"columns": {"prompt": "text"}}, None
    if not text_file:
        fmt, entry, note = _chat_entry(records, columns) or _alpaca_entry(first, columns)
    return Proposal(file_name, fmt, entry, columns, records[:rows], len(records), note)


def _chat_entry(records: list[dict], columns: list[str]):
    column = next((c for c in _MESSAGE_COLUMNS if c in columns and _is_message_list(records[0].get(c))), None)
    if column is None:
        return None
    keys = set(records[0][column][0])
    role_tag, content_tag = ("role", "content") if {"role", "content"} <= keys else ("from", "value")
    turns = [m for r in records[:100] for m in [*(r.get(column) or []), r.get("chosen"), r.get("rejected")]]
    roles = {m.get(role_tag) for m in turns if isinstance(m, dict)}
    openai = role_tag == "role" and roles <= {"system", "user", "assistant", "tool"}
    entry: dict = {"formatting": "openai" if openai else "sharegpt", "columns": {"messages": column}}
    if not openai and not (role_tag == "from" and {"human", "gpt"} <= roles):
        user = next((r for r in _USER_ROLES if r in roles), "user")
        assistant = next((r for r in _ASSISTANT_ROLES if r in roles), "assistant")
        entry["tags"] = {"role_tag": role_tag, "content_tag": content_tag, "user_tag": user, "assistant_tag": assistant}
    return _with_extras(entry, records[0], columns, fmt="openai" if openai else "sharegpt")


def _alpaca_entry(first: dict, columns: list[str]):
    prompt = next((c for c in _PROMPT_COLUMNS if c in columns), None)
    response = next((c for c in _RESPONSE_COLUMNS if c in columns), None)
    text = next((c for c in _TEXT_COLUMNS if c in columns), None)
    if prompt is None and response is None and text is not None and not {"chosen", "rejected"} <= set(columns):
        return "text", {"columns": {"prompt": text}}, None
    query = next((c for c in _QUERY_COLUMNS if c in columns and c != prompt), None)
    mapping = {"prompt": prompt, "query": query, "response": response}
    mapping.update({role: role for role in ("system", "history") if role in columns})
    note = (
        None
        if prompt and (response or {"chosen", "rejected"} <= set(columns))
        else say("data.note_columns_unclear", columns=columns)
    )
    return _with_extras({"columns": {k: v for k, v in mapping.items() if v}}, first, columns, fmt="alpaca", note=note)


def _with_extras(entry: dict, first: dict, columns: list[str], fmt: str, note: Message | None = None):
    """Tools, preference and KTO columns on top of the base mapping; the format name says the kind."""
    mapping = entry["columns"]
    if "tools" in columns:
        mapping["tools"] = "tools"
    if "images" in columns:
        mapping["images"] = "images"
        note = say("data.note_pictures")
    media = [c for c in ("videos", "audios") if c in columns]
    if media:  # kept in the mapping so that registering refuses it, saying why
        mapping.update({c: c for c in media})
        note = say("data.note_multimodal")
    if {"chosen", "rejected"} <= set(columns):
        entry["ranking"] = True
        mapping.update(chosen="chosen", rejected="rejected")
        mapping.pop("response", None)
        return "pairwise", entry, note
    label = next((c for c in ("kto_tag", "label") if c in columns and isinstance(first.get(c), bool)), None)
    if label:
        mapping["kto_tag"] = label
        return "kto", entry, note
    return fmt, entry, note


def _is_message_list(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) for m in value)
