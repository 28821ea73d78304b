import json

import pytest

from studio.data.readers import read_file, read_records
from studio.data.registry import DataError, DatasetSpec

ROWS = [
    {"instruction": "问题一", "input": "", "output": "回答一"},
    {"instruction": "问题二", "input": "补充", "output": "回答二"},
]


def test_reads_json_jsonl_csv_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.json").write_text(json.dumps(ROWS, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "a.jsonl").write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS) + "\n", encoding="utf-8"
    )
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
    with pytest.raises(DataError, match=r"bad.jsonl line 3") as caught:
        read_file(path)
    assert "bad.jsonl 第 3 行" in caught.value.text("zh")  # the Chinese reader gets the same file and line


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
    with pytest.raises(DataError, match="a.json: example 1 is a list") as caught:
        read_file(tmp_path / "a.json")
    assert "第 1 条样本是 list" in caught.value.text("zh")


def test_folder_of_files(tmp_path):
    (tmp_path / "parts").mkdir()
    for i, row in enumerate(ROWS):
        (tmp_path / "parts" / f"{i}.json").write_text(json.dumps([row], ensure_ascii=False), encoding="utf-8")
    records = read_records(tmp_path, DatasetSpec(name="p", file_name="parts"))
    assert records.rows == ROWS and records.where(1) == "1.json example 1"


TRICKY = [
    {"instruction": "第一行\n第二行", "input": 'a "quoted", comma', "output": "喵～\r\n换行 🐾"},
    {"instruction": "  leading spaces", "input": "", "output": "\n答案以换行开头"},
    {"instruction": "q3", "input": "", "output": "a,b,c"},
]


def _write_all_formats(folder, rows):
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    (folder / "d.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    (folder / "d.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    with open(folder / "d.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    pq.write_table(pa.Table.from_pylist(rows), folder / "d.parquet")


def test_csv_keeps_quoted_line_breaks_commas_and_quotes(tmp_path):
    _write_all_formats(tmp_path, TRICKY)
    assert read_file(tmp_path / "d.csv") == TRICKY


def test_every_file_type_gives_identical_conversations(tmp_path):
    from studio.data.examples import to_examples
    from studio.paths import BUNDLED_DATA_DIR

    demo = json.loads((BUNDLED_DATA_DIR / "alpaca_zh_demo.json").read_text(encoding="utf-8")) + TRICKY
    _write_all_formats(tmp_path, demo)
    converted = {
        suffix: to_examples(
            DatasetSpec(name="d", file_name=f"d.{suffix}"),
            read_records(tmp_path, DatasetSpec(name="d", file_name=f"d.{suffix}")),
        ).examples
        for suffix in ("json", "jsonl", "csv", "parquet")
    }
    assert len(converted["json"]) == len(demo)
    assert converted["json"] == converted["jsonl"] == converted["csv"] == converted["parquet"]


def test_records_know_their_line(tmp_path):
    (tmp_path / "a.csv").write_text('instruction,output\n"two\nlines",x\n\nthird,y\n', encoding="utf-8")
    records = read_records(tmp_path, DatasetSpec(name="a", file_name="a.csv"))
    assert [records.where(i) for i in range(2)] == ["a.csv line 2", "a.csv line 5"]
    (tmp_path / "a.jsonl").write_text('{"instruction": "a", "output": "b"}\n\n{"instruction": "c", "output": "d"}\n')
    records = read_records(tmp_path, DatasetSpec(name="a", file_name="a.jsonl"))
    assert records.where(1) == "a.jsonl line 3"


def test_csv_with_too_many_fields_names_the_line(tmp_path):
    (tmp_path / "bad.csv").write_text('instruction,output\nq,a\n"multi\nline",a,extra\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.csv line 3: 3 fields but the header has 2. Quote fields"):
        read_file(tmp_path / "bad.csv")


def test_txt_is_one_document_per_line(tmp_path):
    (tmp_path / "wiki.txt").write_text("first doc\nsecond doc\n", encoding="utf-8")
    assert read_file(tmp_path / "wiki.txt") == [{"text": "first doc"}, {"text": "second doc"}]


def test_lines_break_at_line_feeds_only_as_the_datasets_library_reads_them(tmp_path):
    """json.dumps(ensure_ascii=False) writes U+2028/U+2029 as they are; str.splitlines() would break there."""
    rows = [{"instruction": f"a{c}b", "output": "x\fy\u0085z"} for c in ("\u2028", "\u2029", "\x0b", "\x1c")]
    text = "\r\n".join(json.dumps(row, ensure_ascii=False) for row in rows) + "\r\n"
    (tmp_path / "odd.jsonl").write_text(text, encoding="utf-8", newline="")
    assert read_file(tmp_path / "odd.jsonl") == rows
    (tmp_path / "odd.txt").write_text("one\u2028still one\rtwo\r\nthree\fstill three\n\nfive", newline="")
    assert [r["text"] for r in read_file(tmp_path / "odd.txt")] == [
        "one\u2028still one",
        "two",
        "three\fstill three",
        "",
        "five",
    ]
