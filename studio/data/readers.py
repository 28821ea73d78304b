"""Reading raw records from json, jsonl, csv, parquet and txt files, each record with the place it came from."""

from __future__ import annotations

import bisect
import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from studio.data.registry import DataError, DatasetSpec, Hub
from studio.locales import Message, say
from studio.modeling.from_modelscope import fetch

SUPPORTED_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet", ".txt")
_SUFFIXES = ", ".join(SUPPORTED_SUFFIXES)


@dataclass
class _Part:
    """The records of one file: where they start in Records.rows and how a user finds them in the file."""

    name: str
    unit: str  # "line" (JSON lines, CSV, txt) or "example" (1-based position in a JSON array or parquet file)
    start: int
    numbers: list[int] | None  # the line of each record; None when the position is the number


@dataclass
class Records:
    """Every raw record of one dataset in file order, and where each one is."""

    rows: list[dict] = field(default_factory=list)
    parts: list[_Part] = field(default_factory=list)

    def add(self, name: str, unit: str, rows: list[dict], numbers: list[int] | None = None) -> None:
        self.parts.append(_Part(name, unit, len(self.rows), numbers))
        self.rows.extend(rows)

    def where(self, index: int) -> Message:
        """'data.csv line 7' or 'data.json example 3': what to look for in the file."""
        part, number = self._locate(index)
        return say("data.where", file=part.name, at=at(part.unit, number))

    def _locate(self, index: int) -> tuple[_Part, int]:
        part = self.parts[bisect.bisect_right([p.start for p in self.parts], index) - 1]
        offset = index - part.start
        return part, part.numbers[offset] if part.numbers is not None else offset + 1

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, indices: list[int]) -> Records:
        """The rows at these indices, each keeping its place in its file."""
        picked = Records()
        for index in indices:
            part, number = self._locate(index)
            picked.add(part.name, part.unit, [self.rows[index]], [number])
        return picked


def read_records(dataset_dir: Path, spec: DatasetSpec, hub: Hub = "huggingface") -> Records:
    """All raw records of one registry entry, in file order; a hub entry from the hub `hub` picks for it."""
    records = Records()
    if spec.file_name:
        for path in data_files(Path(dataset_dir) / spec.file_name, spec.name):
            records.add(path.name, *read_located(path))
    else:
        records.add(spec.hub_source(hub)[1] or spec.name, "example", read_hub(spec, hub=hub))
    if not records.rows:
        raise DataError("data.dataset_empty", name=spec.name)
    return records


def at(unit: str, number: int) -> Message:
    """'line 7' or 'example 3' (see _Part for the unit)."""
    return say("data.at_line" if unit == "line" else "data.at_example", number=number)


def data_files(path: Path, name: str) -> list[Path]:
    """The files a registry entry's file_name names (a file, or a folder's data files); DataError when none."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in SUPPORTED_SUFFIXES)
        if not files:
            raise DataError("data.folder_no_files", name=name, path=path, suffixes=_SUFFIXES)
        return files
    if not path.is_file():
        raise DataError("data.file_not_found", name=name, path=path)
    if path.suffix not in SUPPORTED_SUFFIXES:
        raise DataError("data.file_type_unsupported", name=name, path=path, suffixes=_SUFFIXES)
    return [path]


def read_file(path: Path) -> list[dict]:
    return read_located(Path(path))[1]


def read_located(path: Path) -> tuple[str, list[dict], list[int] | None]:
    """(unit, records, line numbers) of one file; see _Part for the unit."""
    readers = {
        ".json": _read_json,
        ".jsonl": _read_jsonl,
        ".csv": _read_csv,
        ".parquet": _read_parquet,
        ".txt": _read_txt,
    }
    if path.suffix not in readers:
        raise DataError("data.file_type_unknown", path=path, suffixes=_SUFFIXES)
    unit, records, numbers = readers[path.suffix](path)
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            where = at("line", numbers[index]) if numbers else at("example", index + 1)
            raise DataError("data.record_not_object", path=path, where=where, type=type(record).__name__)
    return unit, records, numbers


def _read_text(path: Path) -> str:
    """The file's text with its line breaks as written (a quoted CSV field may hold a \r\n of its own)."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError("data.not_utf8", path=path, byte=error.start) from None


def _read_json(path: Path):
    text = _read_text(path)
    if not text.strip():
        raise DataError("data.json_empty", path=path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        if text.lstrip().startswith("{") and error.msg == "Extra data":
            return _parse_json_lines(path, text)  # JSON lines saved with a .json name
        raise DataError("data.json_syntax", path=path, line=error.lineno, column=error.colno, error=error.msg) from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise DataError("data.json_not_array", path=path, type=type(data).__name__)
    return "example", data, None


def _read_jsonl(path: Path):
    text = _read_text(path)
    if not text.strip():
        raise DataError("data.jsonl_empty", path=path)
    return _parse_json_lines(path, text)


def _parse_json_lines(path: Path, text: str):
    records, numbers = [], []
    for number, line in enumerate(_lines(text), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise DataError("data.jsonl_syntax", path=path, line=number, column=error.colno, error=error.msg) from None
        numbers.append(number)
    return "line", records, numbers


def _read_csv(path: Path):
    """Through the csv module on the whole text, so quoted fields keep their line breaks, commas and quotes."""
    text = _read_text(path)
    if not text.strip():
        raise DataError("data.csv_empty", path=path)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
        records, numbers, ended = [], [], reader.line_num
        for row in reader:
            start, ended = ended + 1, reader.line_num
            if not row:
                continue  # a blank line
            if len(row) > len(header):
                raise DataError("data.csv_too_many_fields", path=path, line=start, fields=len(row), header=len(header))
            records.append(dict(zip(header, row + [""] * (len(header) - len(row)))))
            numbers.append(start)
    except csv.Error as error:
        raise DataError("data.csv_syntax", path=path, line=reader.line_num, error=str(error)) from None
    return "line", records, numbers


def _read_txt(path: Path):
    """Plain text for pretraining: one document per line, in a 'text' column (as LLaMA-Factory reads .txt)."""
    lines = _lines(_read_text(path))
    return "line", [{"text": line} for line in lines], list(range(1, len(lines) + 1))


def _lines(text: str) -> list[str]:
    """Lines as the datasets library reads them (universal newlines, then line feeds only). str.splitlines() would
    also break at U+2028, U+2029, U+0085 and form feeds, which JSON strings and documents may hold."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def _read_parquet(path: Path):
    import pyarrow.parquet as pq

    try:
        return "example", pq.read_table(path).to_pylist(), None
    except Exception as error:  # pyarrow raises several unrelated types for a damaged file
        raise DataError("data.parquet_unreadable", path=path, error=str(error)) from None


def read_hub(spec: DatasetSpec, limit: int | None = None, hub: Hub = "huggingface") -> list[dict]:
    """Rows of a hub dataset: from the Hugging Face hub or its cache, or from the folder ModelScope's files were
    downloaded to (read by the datasets library as any local folder: files, subsets and splits alike)."""
    import datasets

    source, hub_id = spec.hub_source(hub)
    where = str(fetch(hub_id, "dataset", DataError)) if source == "modelscope" else hub_id
    split = spec.split if limit is None else f"{spec.split}[:{limit}]"
    try:
        loaded = datasets.load_dataset(where, name=spec.subset, data_dir=spec.folder, split=split)
    except Exception as error:  # offline, missing or private: all surface as different exception types
        raise DataError(
            "data.hub_load_failed" if source == "huggingface" else "data.modelscope_load_failed",
            name=spec.name,
            hub_id=hub_id,
            error_type=type(error).__name__,
            error=str(error)[:300],
        ) from None
    return list(loaded)
