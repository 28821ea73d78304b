"""Adding a dataset: detect the format, store the file and the entry atomically, refuse bad files untouched."""

import csv
import json

import pytest

from studio.config import DataConfig
from studio.data.preview import preview_datasets
from studio.data.register import detect, register, register_hub
from studio.data.registry import REGISTRY_FILE, DataError, load_registry

ROWS = [{"question": "第一行\n第二行", "answer": "喵～\n答案, 带逗号 🐾"}, {"question": "q2", "answer": "a2"}]


@pytest.fixture
def dataset_dir(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / REGISTRY_FILE).write_text(json.dumps({"existing": {"file_name": "existing.json"}}), encoding="utf-8")
    return folder


def _csv(path, rows):
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "rows, fmt, entry",
    [
        (ROWS, "alpaca", {"columns": {"prompt": "question", "response": "answer"}}),
        (
            [{"instruction": "i", "input": "x", "output": "o", "system": "s"}],
            "alpaca",
            {"columns": {"prompt": "instruction", "query": "input", "response": "output", "system": "system"}},
        ),
        (
            [{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}],
            "sharegpt",
            {"formatting": "sharegpt", "columns": {"messages": "conversations"}},
        ),
        (
            [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}],
            "openai",
            {"formatting": "openai", "columns": {"messages": "messages"}},
        ),
        (
            [
                {
                    "conversations": [{"from": "human", "value": "q"}],
                    "chosen": {"from": "gpt", "value": "y"},
                    "rejected": {"from": "gpt", "value": "n"},
                }
            ],
            "pairwise",
            {
                "formatting": "sharegpt",
                "ranking": True,
                "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"},
            },
        ),
        ([{"text": "a document"}], "text", {"columns": {"prompt": "text"}}),
    ],
)
def test_detect_proposes_format_and_mapping(tmp_path, rows, fmt, entry):
    proposal = detect(_jsonl(tmp_path / "up.jsonl", rows))
    assert (proposal.format, proposal.entry, proposal.num_rows) == (fmt, entry, len(rows))
    assert proposal.sample_rows == rows[:3] and proposal.note is None


def test_detect_reads_txt_as_text(tmp_path):
    (tmp_path / "wiki.txt").write_text("one\ntwo\n", encoding="utf-8")
    proposal = detect(tmp_path / "wiki.txt")
    assert proposal.format == "text" and proposal.num_rows == 2


def test_upload_csv_with_quoted_newlines_then_preview(tmp_path, dataset_dir):
    upload = _csv(tmp_path / "my upload.csv", ROWS)
    proposal = detect(upload)
    result = register(dataset_dir, "my_set", upload, proposal.entry)
    assert (dataset_dir / "my_set.csv").read_bytes() == upload.read_bytes()
    registry = json.loads((dataset_dir / REGISTRY_FILE).read_text(encoding="utf-8"))
    assert registry["my_set"] == {**proposal.entry, "file_name": "my_set.csv"} and "existing" in registry
    assert json.loads((dataset_dir / (REGISTRY_FILE + ".bak")).read_text()) == {
        "existing": {"file_name": "existing.json"}
    }
    assert result.examples.examples[0][0]["content"] == "第一行\n第二行"
    [shown] = preview_datasets(DataConfig(dataset_dir=str(dataset_dir), datasets=["my_set"])).datasets
    assert shown.num_usable == 2 and shown.rows[0]["answer"] == "喵～\n答案, 带逗号 🐾"


def test_bytes_upload_with_its_name(dataset_dir):
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS).encode()
    register(
        dataset_dir, "from_bytes", data, {"columns": {"prompt": "question", "response": "answer"}}, file_name="x.jsonl"
    )
    assert load_registry(dataset_dir)["from_bytes"].file_name == "from_bytes.jsonl"


def test_registering_keeps_the_registrys_mode_and_gives_the_file_the_usual_one(tmp_path, dataset_dir):
    import os
    import stat

    (dataset_dir / REGISTRY_FILE).chmod(0o664)
    old_umask = os.umask(0o022)
    try:
        register(dataset_dir, "shared", _jsonl(tmp_path / "s.jsonl", ROWS), {"columns": {"prompt": "question"}})
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((dataset_dir / REGISTRY_FILE).stat().st_mode) == 0o664
    assert stat.S_IMODE((dataset_dir / "shared.jsonl").stat().st_mode) == 0o644  # 0o666 less the umask


def test_a_bad_upload_is_named_as_the_user_knows_it(tmp_path):
    """Gradio keeps uploads in a hashed temporary folder: errors name the file, not that folder."""
    upload = tmp_path / "3f9a0c1e" / "broken.json"
    upload.parent.mkdir()
    upload.write_text('[\n  {"a": 1},\n  {"a" 2}\n]', encoding="utf-8")
    with pytest.raises(DataError) as refused:
        detect(upload)
    assert str(refused.value).startswith("broken.json line 3") and "3f9a0c1e" not in str(refused.value)


def _unchanged(dataset_dir):
    return sorted(p.name for p in dataset_dir.iterdir()) == [REGISTRY_FILE]


def test_bad_file_is_refused_with_file_line_and_fix_and_nothing_changes(tmp_path, dataset_dir):
    bad = tmp_path / "broken.jsonl"
    bad.write_text('{"question": "q", "answer": "a"}\n{"question": oops}\n', encoding="utf-8")
    with pytest.raises(
        DataError, match=r"^broken.jsonl line 2 column \d+: .*Each line must be one JSON object"
    ) as caught:  # named as uploaded, not by the staged copy
        register(dataset_dir, "bad", bad, {"columns": {"prompt": "question", "response": "answer"}})
    assert caught.value.text("zh").startswith("broken.jsonl 第 2 行")
    assert _unchanged(dataset_dir)
    empty_answers = _jsonl(tmp_path / "empty.jsonl", [{"question": "q", "answer": ""}])
    with pytest.raises(
        DataError, match=r"no usable example \(1 with an empty output \(empty.jsonl line 1\)\)"
    ) as caught:
        register(dataset_dir, "empty", empty_answers, {"columns": {"prompt": "question", "response": "answer"}})
    assert "（1 条输出为空的样本（empty.jsonl 第 1 行））" in caught.value.text("zh")
    with pytest.raises(
        DataError, match="has no column 'instruction', 'output'; its columns are \\['answer', 'question'\\]. Map them"
    ):
        register(dataset_dir, "unmapped", _jsonl(tmp_path / "u.jsonl", ROWS), {})
    assert _unchanged(dataset_dir)


def test_name_clashes_and_bad_names_are_refused(tmp_path, dataset_dir):
    upload = _jsonl(tmp_path / "a.jsonl", ROWS)
    entry = {"columns": {"prompt": "question", "response": "answer"}}
    with pytest.raises(DataError, match="'existing' is already in"):
        register(dataset_dir, "existing", upload, entry)
    with pytest.raises(DataError, match="without spaces"):
        register(dataset_dir, "my set", upload, entry)
    with pytest.raises(DataError, match="unsupported file type"):
        register(dataset_dir, "doc", tmp_path / "a.docx", entry)
    for bad in ("..", ".hidden", "-x", "x" * 200, "a/b", "a\nb"):
        with pytest.raises(DataError, match="without spaces"):
            register(dataset_dir, bad, upload, entry)
    assert _unchanged(dataset_dir)


@pytest.mark.parametrize("name", ["dataset_info", "Dataset_Info", "dataset_info.json"])
def test_an_upload_can_never_become_a_registry(tmp_path, name):
    """In a new dataset folder (no registry yet) the upload named dataset_info would be the registry itself."""
    folder = tmp_path / "new"
    folder.mkdir()
    planted = tmp_path / "planted.json"
    planted.write_text(json.dumps({"ssh": {"hf_hub_url": "text", "folder": "/etc/ssh"}}))
    with pytest.raises(DataError, match="reserved for the registry"):
        register(folder, name, planted, {"columns": {"prompt": "ssh"}})
    assert not any(folder.iterdir())


def test_hub_id_offline_is_a_clear_error(dataset_dir):
    with pytest.raises(
        DataError, match="Cannot reach the Hugging Face hub to load 'llamafactory/alpaca_gpt4_zh'.*offline"
    ):
        register_hub(dataset_dir, "alpaca_gpt4_zh_copy", "llamafactory/alpaca_gpt4_zh")
    for bad in ("not a hub id", "../etc", "json", "text", "owner/../x", "/etc/ssh"):
        with pytest.raises(DataError, match="owner/name"):
            register_hub(dataset_dir, "x", bad)
    assert _unchanged(dataset_dir)


def test_video_and_audio_uploads_are_refused_and_pictures_proposed(tmp_path, dataset_dir):
    turns = [{"role": "user", "content": "<video>Who?"}, {"role": "assistant", "content": "Kane."}]
    proposal = detect(_jsonl(tmp_path / "mm.jsonl", [{"messages": turns, "videos": ["1.mp4"]}]))
    assert proposal.entry["columns"]["videos"] == "videos" and "videos and audio are not read" in proposal.note
    with pytest.raises(DataError, match="reads pictures \\('images'\\) but not videos or audio"):
        register(dataset_dir, "mm", tmp_path / "mm.jsonl", proposal.entry)
    assert _unchanged(dataset_dir)
    pictures = detect(_jsonl(tmp_path / "pictures.jsonl", [{"messages": turns, "images": ["1.png"]}]))
    assert pictures.entry["columns"]["images"] == "images" and "vision-language model" in pictures.note
