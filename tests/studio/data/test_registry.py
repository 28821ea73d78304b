import json

import pytest

from studio.data.registry import DataError, load_registry, resolve_specs
from studio.paths import BUNDLED_DATA_DIR


def test_bundled_registry_loads():
    registry = load_registry(BUNDLED_DATA_DIR)
    assert {"alpaca_zh_demo", "identity", "sharegpt_zh_demo"} <= set(registry)
    assert registry["sharegpt_zh_demo"].formatting == "sharegpt"
    assert registry["alpaca_zh_demo"].column("prompt") == "instruction"


def test_llama_factory_registry_works_unchanged(tmp_path):
    # Entries as LLaMA-Factory writes them, including keys we do not use.
    registry = {
        "my_alpaca": {"file_name": "a.json", "columns": {"prompt": "q", "query": "ctx", "response": "a", "system": "sys"}},
        "my_chat": {
            "file_name": "c.json",
            "formatting": "sharegpt",
            "columns": {"messages": "messages"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
        },
        "hub_one": {"hf_hub_url": "org/set", "ms_hub_url": "org/set", "ranking": False, "load_from": "hub"},
    }
    (tmp_path / "dataset_info.json").write_text(json.dumps(registry))
    specs = load_registry(tmp_path)
    assert specs["my_alpaca"].column("prompt") == "q" and specs["my_alpaca"].column("response") == "a"
    assert specs["my_chat"].tags.role_tag == "role"
    assert specs["hub_one"].hf_hub_url == "org/set"


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(DataError) as caught:
        resolve_specs(BUNDLED_DATA_DIR, ["alpaca_zh_demo", "nope"])
    assert "'nope'" in str(caught.value) and "alpaca_zh_demo" in str(caught.value)


def test_malformed_registry_points_at_the_line(tmp_path):
    (tmp_path / "dataset_info.json").write_text('{\n  "a": {"file_name": "a.json"},\n  "b": {"file_name" "b.json"}\n}')
    with pytest.raises(DataError, match=r"dataset_info.json line 3"):
        load_registry(tmp_path)


def test_entry_without_a_source_is_refused(tmp_path):
    (tmp_path / "dataset_info.json").write_text('{"a": {"formatting": "alpaca"}}')
    with pytest.raises(DataError, match="entry 'a'.*file_name"):
        load_registry(tmp_path)


def test_missing_folder_and_registry(tmp_path):
    with pytest.raises(DataError, match="Dataset folder not found"):
        load_registry(tmp_path / "nope")
    with pytest.raises(DataError, match="dataset_info.json not found"):
        load_registry(tmp_path)
