"""Pictures in LLaMA-Factory's multimodal data: an `images` column whose paths stand, in order, for the `<image>`
placeholders of the record's turns.

The record may be a conversation (sft), a preference pair (dpo) or a feedback example (kto); a pair's and a feedback
example's pictures stand in its prompt turns. Read as LLaMA-Factory's converter reads them: one path or a list of
paths, a relative path naming a file under the dataset folder (its media_dir default), an absolute path itself.
Each path is kept resolved (symlinks followed), so the file a check approved is the file every later step opens. A
record is refused, naming the file and line of the record and the picture, when its placeholders and pictures differ
in number (LLaMA-Factory's rule), or a picture is missing or not a picture PIL can read. Which pictures a served
studio may read at all is the workspace's decision (studio.workspace checks every picture of a dataset before
anything reads it).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from studio.data.registry import DataError, DatasetSpec, Hub
from studio.locales import say
from studio.modeling.vision import IMAGE_PLACEHOLDER, dataset_formats

if TYPE_CHECKING:
    from studio.data.formats import Message
    from studio.data.readers import Records
    from studio.locales import Message as Said

PICTURE_COLUMN = "images"
THUMBNAIL_PIXELS = 96  # the longer side of a preview's thumbnail


def has_pictures(spec: DatasetSpec) -> bool:
    return bool(spec.column(PICTURE_COLUMN))


def raw_pictures(spec: DatasetSpec, record: dict, where: Said) -> list[str]:
    """The record's picture paths as written: a single path counts as a list of one; none is an empty list."""
    column = spec.column(PICTURE_COLUMN)
    value = record.get(column) if column else None
    if value is None or value == "":
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) and item.strip() for item in items):
        # a hub dataset's Image feature (bytes, PIL objects) has no path in the dataset folder
        raise DataError("data.picture_not_path", where=where, column=column)
    return items


def picture_path(media_dir: Path | None, raw: str) -> Path:
    """Where a picture of the dataset in `media_dir` is: relative paths under that folder, absolute ones as given.
    Resolved, never normalised first: 'link/..' must mean what the file system means by it."""
    path = Path(raw)
    return (media_dir / path if media_dir is not None and not path.is_absolute() else path).resolve()


def check_picture(path: Path, raw: str, where: Said) -> None:
    """A file PIL recognises as a picture, its structure intact (the pixels are decoded when counted)."""
    from PIL import Image

    if not path.is_file():
        raise DataError("data.picture_missing", where=where, picture=raw, path=path)
    try:
        with Image.open(path, formats=dataset_formats()) as image:
            image.verify()
    except Exception as error:  # PIL raises many types for a damaged or foreign file (and bombs)
        raise DataError("data.picture_unreadable", where=where, picture=raw, error=error) from None


def turns_with_pictures(turns: list[Message], pictures: list[Path], raws: list[str], where: Said) -> list[Message]:
    """The turns, each that holds placeholders given the paths of its pictures (as "images"), in order; refused
    when the record's placeholders and pictures differ in number. A system turn's text is never a picture's place."""
    counts = [placeholders(turn) for turn in turns]
    if sum(counts) != len(pictures):
        shown = ", ".join(raws) or "-"
        raise DataError("data.picture_count", where=where, placeholders=sum(counts), pictures=len(pictures), raw=shown)
    remaining = iter(str(path) for path in pictures)
    return [{**turn, "images": [next(remaining) for _ in range(n)]} if n else turn for turn, n in zip(turns, counts)]


def read_pictures(
    spec: DatasetSpec, record: dict, turns: list[Message], media_dir: Path | None, where: Said
) -> list[Message]:
    """The record's turns carrying its pictures, each picture checked (see the module's notes)."""
    raws = raw_pictures(spec, record, where)
    paths = [picture_path(media_dir, raw) for raw in raws]
    for path, raw in zip(paths, raws):
        check_picture(path, raw, where)
    return turns_with_pictures(turns, paths, raws, where)


def refuse_answer_pictures(answer: Message, where: Said) -> None:
    """A preference pair's answers and a feedback example's answer show no pictures: each answer is trained after the
    same prompt, which shows the record's pictures (LLaMA-Factory passes them with the prompt and each answer)."""
    if placeholders(answer):
        raise DataError("data.picture_in_answer", where=where)


def placeholders(turn: Message) -> int:
    """How many pictures a turn shows: the placeholders in its text, none in a system turn's (chat counts so too)."""
    return 0 if turn["role"] == "system" else turn["content"].count(IMAGE_PLACEHOLDER)


def conversation_pictures(messages: list[Message]) -> list[str]:
    """A conversation's pictures in the order of their placeholders."""
    return [path for message in messages for path in message.get("images") or ()]


def refuse_text_model(model: str, dataset: str | None = None) -> NoReturn:
    """The one refusal of pictures for a model that reads text only, naming the dataset where it is known."""
    data = say("data.pictures_of_dataset", name=dataset) if dataset is not None else say("data.pictures_of_this_data")
    raise DataError("data.pictures_need_vision_model", data=data, model=model)


def record_pictures(
    spec: DatasetSpec, records: Records, limit: int | None = None, *, strict: bool = True
) -> Iterator[tuple[int, Said, list[str]]]:
    """(index, where, pictures as written) of each record (of the first `limit`) that names pictures, in file order.
    A record whose picture column holds something else is refused (DataError), or with `strict` off passed over
    (a row that conversion skips for its own reasons may hold anything there)."""
    column = spec.column(PICTURE_COLUMN)
    if not column:
        return
    for index, record in enumerate(records.rows[:limit]):
        if record.get(column) in (None, "", []):
            continue
        where = records.where(index)
        try:
            raws = raw_pictures(spec, record, where)
        except DataError:
            if strict:
                raise
            continue
        yield index, where, raws


def dataset_pictures(
    dataset_dir: Path, spec: DatasetSpec, hub: Hub = "huggingface"
) -> Iterator[tuple[Said, str, Path]]:
    """(where, as written, path) of every picture a file dataset names, unchecked: for a check of the places.

    The pictures as written are read once per version of the data files (path, mtime, size): the fit line asks
    at every change of a field. Paths are resolved on every call, so a link changed since leads where it leads now.
    """
    from studio.data.readers import data_files, read_records

    if not has_pictures(spec) or not spec.file_name:
        return
    files = data_files(Path(dataset_dir) / spec.file_name, spec.name)
    stamp = tuple((str(path), status.st_mtime_ns, status.st_size) for path in files for status in [path.stat()])
    key = (str(dataset_dir), spec.model_dump_json(), hub, stamp)
    written = _WRITTEN_PICTURES.get(key)
    if written is None:
        found = record_pictures(spec, read_records(dataset_dir, spec, hub))
        written = [(where, raw) for _, where, raws in found for raw in raws]
        if len(_WRITTEN_PICTURES) >= _WRITTEN_PICTURES_KEPT:
            _WRITTEN_PICTURES.clear()
        _WRITTEN_PICTURES[key] = written
    for where, raw in written:
        yield where, raw, picture_path(dataset_dir, raw)


# the pictures as written of the datasets checked lately, by their data files' versions (dataset_pictures)
_WRITTEN_PICTURES: dict[tuple, list[tuple[Said, str]]] = {}
_WRITTEN_PICTURES_KEPT = 32


def thumbnail_uri(path: str | Path, size: int = THUMBNAIL_PIXELS) -> str:
    """A small copy of the picture as a data: URI (PNG), for a page to show without serving any file."""
    from PIL import Image

    with Image.open(path, formats=dataset_formats()) as image:
        image.thumbnail((size, size))
        small = image.convert("RGBA") if image.mode in ("P", "LA", "PA") else image
        if small.mode not in ("RGB", "RGBA", "L"):
            small = small.convert("RGB")
        buffer = io.BytesIO()
        small.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
