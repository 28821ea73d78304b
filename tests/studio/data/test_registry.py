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
        "my_alpaca": {
            "file_name": "a.json",
            "columns": {"prompt": "q", "query": "ctx", "response": "a", "system": "sys"},
        },
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
    registry = load_registry(tmp_path)
    with pytest.raises(DataError, match="entry 'a'.*file_name"):
        registry["a"]


def test_a_bad_entry_spoils_only_itself(tmp_path):
    registry = {
        "good": {"file_name": "g.json"},
        "future": {"file_name": "f.json", "formatting": "xml"},
        "wrong": {"file_name": "w.json", "columns": ["prompt"]},
        "chat": {"file_name": "c.json", "formatting": "openai"},
    }
    (tmp_path / "dataset_info.json").write_text(json.dumps(registry))
    loaded = load_registry(tmp_path)
    assert list(loaded) == ["good", "future", "wrong", "chat"]
    assert loaded["good"].file_name == "g.json" and loaded["chat"].tags.role_tag == "role"
    with pytest.raises(DataError, match=r"entry 'future' is invalid: formatting: .*'alpaca', 'sharegpt' or 'openai'"):
        resolve_specs(tmp_path, ["good", "future"])
    with pytest.raises(DataError, match="entry 'wrong' is invalid: columns"):
        resolve_specs(tmp_path, ["wrong"])
    assert [s.name for s in resolve_specs(tmp_path, ["good", "chat"])] == ["good", "chat"]


KINDS = {  # entries as LLaMA-Factory's own data/dataset_info.json writes them
    "alpaca_zh_demo": ({"file_name": "a.json"}, "sft"),
    "glaive_toolcall_zh_demo": (
        {"file_name": "g.json", "formatting": "sharegpt", "columns": {"messages": "conversations", "tools": "tools"}},
        "sft",
    ),
    "dpo_zh_demo": (
        {
            "file_name": "d.json",
            "ranking": True,
            "formatting": "sharegpt",
            "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"},
        },
        "pairwise",
    ),
    "ultrafeedback": (
        {
            "hf_hub_url": "x/y",
            "ranking": True,
            "columns": {"prompt": "instruction", "chosen": "chosen", "rejected": "rejected"},
        },
        "pairwise",
    ),
    "kto_en_demo": (
        {"file_name": "k.json", "formatting": "sharegpt", "columns": {"messages": "messages", "kto_tag": "label"}},
        "kto",
    ),
    "c4_demo": ({"file_name": "c4_demo.jsonl", "columns": {"prompt": "text"}}, "text"),
    "wiki_demo": ({"file_name": "wiki_demo.txt", "columns": {"prompt": "text"}}, "text"),
}


def test_kinds_follow_from_the_entry(tmp_path):
    (tmp_path / "dataset_info.json").write_text(json.dumps({name: entry for name, (entry, _) in KINDS.items()}))
    registry = load_registry(tmp_path)
    assert {name: registry[name].kind for name in KINDS} == {name: kind for name, (_, kind) in KINDS.items()}


@pytest.mark.parametrize(
    "entry, message",
    [
        (
            {"file_name": "m.json", "formatting": "sharegpt", "columns": {"messages": "messages", "videos": "videos"}},
            "videos columns: the studio reads pictures \\('images'\\) but not videos or audio",
        ),
        (  # pretraining text: only sft, dpo and kto data take pictures
            {"file_name": "t.txt", "columns": {"images": "images"}},
            "has pictures, and stage pt does not train on pictures: only sft, dpo and kto do",
        ),
        ({"hf_hub_url": "org/set", "columns": {"images": "images"}}, "comes from a hub and has pictures"),
        ({"om_hub_url": "org/set"}, "only on Modelers"),
        ({"script_url": "script_dir"}, "loaded by a script"),
        ({"cloud_file_name": "s3://bucket/file.json"}, "cloud file"),
    ],
)
def test_what_cannot_be_read_is_refused_with_what_to_do(tmp_path, entry, message):
    (tmp_path / "dataset_info.json").write_text(json.dumps({"x": entry}))
    with pytest.raises(DataError, match=f"Dataset 'x'.*{message}"):
        resolve_specs(tmp_path, ["x"])


def test_missing_folder_and_registry(tmp_path):
    with pytest.raises(DataError, match="Dataset folder not found"):
        load_registry(tmp_path / "nope")
    with pytest.raises(DataError, match="dataset_info.json not found"):
        load_registry(tmp_path)


@pytest.mark.parametrize(
    "entry, field",
    [
        ({"hf_hub_url": "text", "folder": "/etc/ssh"}, "hf_hub_url"),  # one of the datasets library's own loaders
        ({"hf_hub_url": "json"}, "hf_hub_url"),
        ({"hf_hub_url": "../../etc"}, "hf_hub_url"),
        ({"hf_hub_url": "/etc/ssh"}, "hf_hub_url"),
        ({"hf_hub_url": "owner/../x"}, "hf_hub_url"),
        ({"ms_hub_url": "parquet"}, "ms_hub_url"),
        ({"hf_hub_url": "org/set", "folder": "../../../etc"}, "folder"),
        ({"hf_hub_url": "org/set", "folder": "/etc/ssh"}, "folder"),
        ({"hf_hub_url": "org/set", "folder": "~/.ssh"}, "folder"),
        ({"hf_hub_url": "org/set", "subset": "../x"}, "subset"),
        ({"hf_hub_url": "org/set", "split": "/etc/passwd"}, "split"),
    ],
)
def test_fields_that_name_places_are_refused_when_they_could_lead_anywhere(tmp_path, entry, field):
    (tmp_path / "dataset_info.json").write_text(json.dumps({"bad": entry}))
    with pytest.raises(DataError, match=f"entry 'bad' is invalid: {field}"):
        resolve_specs(tmp_path, ["bad"])


def test_hub_entries_as_llama_factory_writes_them_stay_valid(tmp_path):
    entries = {
        "a": {"hf_hub_url": "llamafactory/alpaca_gpt4_zh"},
        "b": {"hf_hub_url": "HuggingFaceH4/ultrachat_200k", "split": "train_sft"},
        "c": {"hf_hub_url": "allenai/c4", "folder": "en", "subset": "en.noblocklist", "split": "train[:10%]"},
        "d": {"hf_hub_url": "a/b", "ms_hub_url": "AI-ModelScope/alpaca-gpt4-data-zh", "om_hub_url": "HaM/x"},
    }
    (tmp_path / "dataset_info.json").write_text(json.dumps(entries))
    assert [spec.name for spec in resolve_specs(tmp_path, list(entries))] == list(entries)


def test_the_hub_an_entry_loads_from_is_llama_factorys_choice(tmp_path):
    """ModelScope's id when model.hub is modelscope or the entry has no Hugging Face id (as USE_MODELSCOPE_HUB)."""
    entries = {
        "both": {"hf_hub_url": "hf/set", "ms_hub_url": "ms/set"},
        "hf_only": {"hf_hub_url": "hf/set"},
        "ms_only": {"ms_hub_url": "ms/set"},
    }
    (tmp_path / "dataset_info.json").write_text(json.dumps(entries))
    both, hf_only, ms_only = resolve_specs(tmp_path, list(entries))
    assert both.hub_source("huggingface") == ("huggingface", "hf/set")
    assert both.hub_source("modelscope") == ("modelscope", "ms/set")
    assert hf_only.hub_source("modelscope") == ("huggingface", "hf/set")
    assert ms_only.hub_source("huggingface") == ms_only.hub_source("modelscope") == ("modelscope", "ms/set")
