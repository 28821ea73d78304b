"""Every kind a LLaMA-Factory registry describes: read with its meaning, or refused saying why and what instead."""

import json

import pytest

from studio.config import DataConfig
from studio.data.examples import FeedbackExample, PairwiseExample, TextDocument, to_examples
from studio.data.prepare import load_conversations
from studio.data.preview import preview_datasets
from studio.data.registry import DataError, DatasetSpec, load_registry

TOOLS = [
    {
        "name": "get_weather",
        "description": "天气",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]
CALL = {"name": "get_weather", "arguments": {"city": "北京"}}

# Shaped like LLaMA-Factory's demo files (glaive_toolcall, dpo, kto, c4, mllm), written here.
FILES = {
    "tools.json": [
        {
            "conversations": [
                {"from": "human", "value": "北京天气？"},
                {"from": "function_call", "value": json.dumps(CALL, ensure_ascii=False)},
                {"from": "observation", "value": '{"temp": 20}'},
                {"from": "gpt", "value": "北京 20 度。"},
            ],
            "tools": json.dumps(TOOLS, ensure_ascii=False),
        }
    ],
    "openai.jsonl": [
        {
            "messages": [
                {"role": "system", "content": "你是助手"},
                {"role": "user", "content": "北京天气？"},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "北京"}'}}
                    ],
                },
                {"role": "tool", "content": '{"temp": 20}'},
                {"role": "tool", "content": '{"humidity": 30}'},
                {"role": "assistant", "content": "20 度，湿度 30。"},
            ],
            "tools": TOOLS,
        }
    ],
    "dpo.json": [
        {
            "conversations": [{"from": "human", "value": "问"}],
            "chosen": {"from": "gpt", "value": "好答案"},
            "rejected": {"from": "gpt", "value": "坏答案"},
        }
    ],
    "dpo_alpaca.json": [{"instruction": "问", "chosen": "好", "rejected": "坏"}],
    "kto.json": [
        {"messages": [{"role": "user", "content": "问"}, {"role": "assistant", "content": "答"}], "label": False},
        {"messages": [{"role": "user", "content": "问"}, {"role": "assistant", "content": "答"}], "label": True},
    ],
    "c4.jsonl": [{"text": "A document."}, {"text": "  "}, {"text": "Another one."}],
    "mllm.json": [
        {
            "messages": [{"role": "user", "content": "<image>Who?"}, {"role": "assistant", "content": "Kane."}],
            "images": ["1.jpg"],
        }
    ],
    "holes.jsonl": [
        {"instruction": "q1", "output": "a1"},
        {"instruction": "q2", "output": ""},
        {"instruction": "", "output": "a3"},
        {"instruction": "q4", "output": "a4"},
        {"instruction": "q5", "output": " "},
    ],
}
ROLE_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
REGISTRY = {
    "tools": {
        "file_name": "tools.json",
        "formatting": "sharegpt",
        "columns": {"messages": "conversations", "tools": "tools"},
    },
    "openai": {
        "file_name": "openai.jsonl",
        "formatting": "openai",
        "columns": {"messages": "messages", "tools": "tools"},
    },
    "dpo": {
        "file_name": "dpo.json",
        "ranking": True,
        "formatting": "sharegpt",
        "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"},
    },
    "dpo_alpaca": {
        "file_name": "dpo_alpaca.json",
        "ranking": True,
        "columns": {"prompt": "instruction", "chosen": "chosen", "rejected": "rejected"},
    },
    "kto": {
        "file_name": "kto.json",
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "kto_tag": "label"},
        "tags": ROLE_TAGS,
    },
    "c4": {"file_name": "c4.jsonl", "columns": {"prompt": "text"}},
    "mllm": {
        "file_name": "mllm.json",
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "images": "images"},
        "tags": ROLE_TAGS,
    },
    "holes": {"file_name": "holes.jsonl"},
    "broken": {"file_name": "x.json", "formatting": "openai-chat"},
}


@pytest.fixture
def data_dir(tmp_path):
    for name, rows in FILES.items():
        if name.endswith(".jsonl"):
            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        else:
            text = json.dumps(rows, ensure_ascii=False)
        (tmp_path / name).write_text(text, encoding="utf-8")
    (tmp_path / "dataset_info.json").write_text(json.dumps(REGISTRY), encoding="utf-8")
    return tmp_path


def _load(data_dir, name):
    return load_conversations(DataConfig(dataset_dir=str(data_dir), datasets=[name]))[0]


def test_tool_calls_keep_tools_calls_and_observations(data_dir):
    [messages] = _load(data_dir, "tools").examples
    assert messages[0] == {"role": "system", "content": "", "tools": json.dumps(TOOLS, ensure_ascii=False)}
    assert [m["role"] for m in messages[1:]] == ["user", "function_call", "observation", "assistant"]
    assert json.loads(messages[2]["content"]) == CALL


def test_openai_messages_with_tool_calls_and_results(data_dir):
    [messages] = _load(data_dir, "openai").examples
    assert [m["role"] for m in messages] == ["system", "user", "function_call", "observation", "assistant"]
    assert messages[0]["content"] == "你是助手" and json.loads(messages[0]["tools"]) == TOOLS
    assert json.loads(messages[2]["content"]) == [CALL]  # arguments as an object, as chat templates render them
    assert messages[3]["content"] == '{"temp": 20}\n</tool_response>\n<tool_response>\n{"humidity": 30}'


@pytest.mark.parametrize("name, fits", [("dpo", "dpo"), ("dpo_alpaca", "dpo"), ("kto", "kto"), ("c4", "pt")])
def test_preference_and_pretraining_data_are_refused_for_sft(data_dir, name, fits):
    with pytest.raises(
        DataError,
        match=rf"Dataset '{name}' cannot be used for supervised fine-tuning \(training.stage: sft\).*"
        rf"Choose training.stage: {fits} for it",
    ):
        _load(data_dir, name)


@pytest.mark.parametrize(
    "stage, name, holds",
    [
        ("dpo", "kto", "answers marked desirable or not"),
        ("dpo", "openai", "conversations"),
        ("kto", "dpo", "preference pairs"),
        ("pt", "holes", "conversations"),
    ],
)
def test_each_stage_refuses_the_other_kinds_naming_both(data_dir, stage, name, holds):
    from studio.data.prepare import load_stage_examples

    with pytest.raises(
        DataError, match=rf"Dataset '{name}' cannot be used for .*\(training.stage: {stage}\): it holds {holds}"
    ):
        load_stage_examples(DataConfig(dataset_dir=str(data_dir), datasets=[name]), stage)


@pytest.mark.parametrize(
    "stage, name, kind", [("dpo", "dpo", PairwiseExample), ("kto", "kto", FeedbackExample), ("pt", "c4", TextDocument)]
)
def test_each_stage_reads_its_own_kind(data_dir, stage, name, kind):
    from studio.data.prepare import load_stage_examples

    [loaded] = load_stage_examples(DataConfig(dataset_dir=str(data_dir), datasets=[name]), stage)
    assert loaded.examples and all(isinstance(example, kind) for example in loaded.examples)


def test_preference_and_pretraining_data_keep_their_meaning(data_dir):
    registry = load_registry(data_dir)

    def read(name):
        from studio.data.readers import read_records

        return to_examples(registry[name], read_records(data_dir, registry[name]))

    assert read("dpo").examples == [
        PairwiseExample(
            [{"role": "user", "content": "问"}],
            {"role": "assistant", "content": "好答案"},
            {"role": "assistant", "content": "坏答案"},
        )
    ]
    assert read("dpo_alpaca").examples[0].chosen == {"role": "assistant", "content": "好"}
    kto = read("kto")
    assert kto.kind == "kto" and [e.desirable for e in kto.examples] == [False, True]
    assert isinstance(kto.examples[0], FeedbackExample) and kto.examples[0].messages[-1]["content"] == "答"
    c4 = read("c4")
    assert c4.examples == [TextDocument("A document."), TextDocument("Another one.")]
    assert c4.skipped_rows[0].where == "c4.jsonl line 2"


def test_a_dataset_of_pictures_whose_picture_is_missing_is_refused_naming_record_and_picture(data_dir):
    with pytest.raises(DataError, match=r"mllm.json example 1: picture '1.jpg' not found"):
        _load(data_dir, "mllm")


def test_a_broken_entry_spoils_only_itself(data_dir):
    assert _load(data_dir, "holes").examples
    with pytest.raises(DataError, match="entry 'broken' is invalid: formatting"):
        _load(data_dir, "broken")


def test_skipped_rows_are_located_in_preview_and_split(data_dir):
    from studio.data.prepare import split_conversations

    [holes] = preview_datasets(DataConfig(dataset_dir=str(data_dir), datasets=["holes"])).datasets
    assert holes.num_usable == 2 and holes.kind == "sft"
    assert [(r.where, r.reason) for r in holes.skipped_rows] == [
        ("holes.jsonl line 2", "with an empty output"),
        ("holes.jsonl line 3", "with an empty instruction"),
        ("holes.jsonl line 5", "with an empty output"),
    ]
    split = split_conversations([_load(data_dir, "holes")], 0.0, seed=0)
    assert split.skipped == {
        "holes: with an empty output (holes.jsonl line 2, holes.jsonl line 5)": 2,
        "holes: with an empty instruction (holes.jsonl line 3)": 1,
    }


def test_kinds_show_in_preview(data_dir):
    preview = preview_datasets(DataConfig(dataset_dir=str(data_dir), datasets=["dpo", "c4"]))
    assert [d.kind for d in preview.datasets] == ["pairwise", "text"]
    assert "pairwise data" in preview.to_text() and "skipped c4.jsonl line 2: with empty text" in preview.to_text()


def test_function_call_must_be_json():
    spec = DatasetSpec(name="t", file_name="t.json", formatting="sharegpt")
    bad = {
        "conversations": [
            {"from": "human", "value": "q"},
            {"from": "function_call", "value": "get_weather(北京)"},
            {"from": "observation", "value": "20"},
            {"from": "gpt", "value": "a"},
        ]
    }
    good = {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
    result = to_examples(spec, [bad, good])
    assert result.skipped == {"with a function_call that is not JSON": 1}


def test_num_samples_samples_and_repeats_as_llamafactory_does(data_dir):
    rows = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(3)]
    (data_dir / "three.json").write_text(json.dumps(rows))
    registry = json.loads((data_dir / "dataset_info.json").read_text())
    registry["fewer"] = {"file_name": "three.json", "num_samples": 2}
    registry["more"] = {"file_name": "three.json", "num_samples": 7}
    (data_dir / "dataset_info.json").write_text(json.dumps(registry))
    fewer, more = (_load(data_dir, name) for name in ("fewer", "more"))
    assert len(fewer.examples) == 2 and len({m[0]["content"] for m in fewer.examples}) == 2
    assert len(more.examples) == 7 and {m[0]["content"] for m in more.examples} == {"q0", "q1", "q2"}
