import json

import pytest

from studio.data.readers import read_file, read_records
from studio.data.registry import DataError, DatasetSpec

ROWS = [{"instruction": "问题一", "input": "", "output": "回答一"}, {"instruction": "问题二", "input": "补充", "output": "回答二"}]


def test_reads_json_jsonl_csv_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.json").write_text(json.dumps(ROWS, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS) + "\n", encoding="utf-8")
    (tmp_path / "a.csv").write_text("instruction,input,output\n问题一,,回答一\n问题二,补充,回答二\n", encoding="utf-8")
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "a.parquet")
    for suffix in ("json", "jsonl", "csv", "parquet"):
        assert read_file(tmp_path / f"a.{suffix}") == ROWS, suffix


def test_json_lines_saved_as_json_are_accepted(tmp_path):
    path = tmp_path / "a.json"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS), encoding="utf-8")
    assert read_file(path) == ROWS


def test_malformed_json_says_file_and_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[\n {"instruction": "a", "output": "b"},\n {"instruction": "c" "output": "d"}\n]')
    with pytest.raises(DataError) as caught:
        read_file(path)
    assert "bad.json line 3" in str(caught.value)


def test_malformed_jsonl_says_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n\n{"instruction": oops}\n')
    with pytest.raises(DataError, match=r"bad.jsonl line 3"):
        read_file(path)


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.json").write_text("  \n")
    with pytest.raises(DataError, match="empty"):
        read_file(tmp_path / "empty.json")
    (tmp_path / "empty_array.json").write_text("[]")
    spec = DatasetSpec(name="e", file_name="empty_array.json")
    with pytest.raises(DataError, match="Dataset 'e' is empty"):
        read_records(tmp_path, spec)
    with pytest.raises(DataError, match="not found"):
        read_records(tmp_path, DatasetSpec(name="m", file_name="missing.json"))


def test_non_object_rows_are_refused(tmp_path):
    (tmp_path / "a.json").write_text('[["a", "b"]]')
    with pytest.raises(DataError, match="example 1 is a list"):
        read_file(tmp_path / "a.json")


def test_folder_of_files(tmp_path):
    (tmp_path / "parts").mkdir()
    for i, row in enumerate(ROWS):
        (tmp_path / "parts" / f"{i}.json").write_text(json.dumps([row], ensure_ascii=False), encoding="utf-8")
    assert read_records(tmp_path, DatasetSpec(name="p", file_name="parts")) == ROWS
