"""Reading raw records from json, jsonl, csv and parquet files, with errors that point at the line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from studio.data.registry import DataError, DatasetSpec

SUPPORTED_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")


def read_records(dataset_dir: Path, spec: DatasetSpec) -> list[dict]:
    """All raw records of one registry entry, in file order."""
    if spec.file_name:
        records = []
        for path in _data_files(Path(dataset_dir) / spec.file_name, spec.name):
            records.extend(read_file(path))
    else:
        records = _read_hub(spec)
    if not records:
        raise DataError(f"Dataset '{spec.name}' is empty: it holds no examples. Add examples or remove it from data.datasets.")
    return records


def _data_files(path: Path, name: str) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in SUPPORTED_SUFFIXES)
        if not files:
            raise DataError(f"Dataset '{name}': folder {path} holds no {', '.join(SUPPORTED_SUFFIXES)} files.")
        return files
    if not path.is_file():
        raise DataError(f"Dataset '{name}': file {path} not found. Fix 'file_name' in dataset_info.json or add the file.")
    if path.suffix not in SUPPORTED_SUFFIXES:
        raise DataError(f"Dataset '{name}': {path} has an unsupported type; use one of {', '.join(SUPPORTED_SUFFIXES)}.")
    return [path]


def read_file(path: Path) -> list[dict]:
    readers = {".json": _read_json, ".jsonl": _read_jsonl, ".csv": _read_csv, ".parquet": _read_parquet}
    records = readers[path.suffix](path)
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise DataError(f"{path}: example {index + 1} is a {type(record).__name__}, not an object with named fields.")
    return records


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text (byte {error.start}). Save the file as UTF-8.") from None


def _read_json(path: Path) -> list[dict]:
    text = _read_text(path)
    if not text.strip():
        raise DataError(f"{path} is empty. Put a JSON array of examples in it.")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        if text.lstrip().startswith("{") and error.msg == "Extra data":
            return _parse_json_lines(path, text)  # JSON lines saved with a .json name
        raise DataError(f"{path} line {error.lineno} column {error.colno}: {error.msg}. Fix the JSON there.") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON array of examples, found {type(data).__name__}.")
    return data


def _read_jsonl(path: Path) -> list[dict]:
    text = _read_text(path)
    if not text.strip():
        raise DataError(f"{path} is empty. Put one JSON object per line in it.")
    return _parse_json_lines(path, text)


def _parse_json_lines(path: Path, text: str) -> list[dict]:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise DataError(f"{path} line {number} column {error.colno}: {error.msg}. Each line must be one JSON object.") from None
    return records


def _read_csv(path: Path) -> list[dict]:
    text = _read_text(path)
    if not text.strip():
        raise DataError(f"{path} is empty. Put a header row and one example per row in it.")
    reader = csv.DictReader(text.splitlines())
    records = []
    for record in reader:
        if None in record:
            raise DataError(f"{path} line {reader.line_num}: more fields than the header has. Quote fields that contain commas.")
        records.append(record)
    return records


def _read_parquet(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except Exception as error:  # pyarrow raises several unrelated types for a damaged file
        raise DataError(f"{path}: not a readable parquet file ({error}).") from None


def _read_hub(spec: DatasetSpec) -> list[dict]:
    import datasets

    url = spec.hf_hub_url or spec.ms_hub_url
    try:
        loaded = datasets.load_dataset(url, name=spec.subset, data_dir=spec.folder, split=spec.split)
    except Exception as error:  # offline, missing or private: all surface as different exception types
        raise DataError(
            f"Dataset '{spec.name}': could not load '{url}' from the hub or its cache ({type(error).__name__}: {error}). "
            "Offline, download it once elsewhere and point 'file_name' at the local file."
        ) from None
    return list(loaded)
