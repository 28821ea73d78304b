import pytest

from studio.data.examples import to_examples
from studio.data.registry import DataError, DatasetSpec, DatasetTags


def test_alpaca_with_input_history_and_system():
    spec = DatasetSpec(name="a", file_name="a.json", columns={"history": "history", "system": "system"})
    record = {
        "instruction": "翻译",
        "input": "hello",
        "output": "你好",
        "history": [["早", "早上好"]],
        "system": "你是翻译",
    }
    [messages] = to_examples(spec, [record]).examples
    assert messages == [
        {"role": "system", "content": "你是翻译"},
        {"role": "user", "content": "早"},
        {"role": "assistant", "content": "早上好"},
        {"role": "user", "content": "翻译\nhello"},
        {"role": "assistant", "content": "你好"},
    ]


def test_system_prompt_override():
    spec = DatasetSpec(name="a", file_name="a.json")
    [messages] = to_examples(spec, [{"instruction": "q", "output": "a"}], system_prompt="S").examples
    assert messages[0] == {"role": "system", "content": "S"}


def test_sharegpt_with_custom_tags():
    spec = DatasetSpec(
        name="c",
        file_name="c.json",
        formatting="sharegpt",
        columns={"messages": "messages"},
        tags=DatasetTags(role_tag="role", content_tag="content", user_tag="user", assistant_tag="assistant"),
    )
    record = {
        "messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "u1"},
            {"role": "assistant", "content": "a1"},
            {"role": "user", "content": "u2"},
            {"role": "assistant", "content": "a2"},
        ]
    }
    [messages] = to_examples(spec, [record]).examples
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant"]


def test_missing_columns_say_what_exists_and_how_to_map():
    spec = DatasetSpec(name="a", file_name="a.json")
    with pytest.raises(DataError) as caught:
        to_examples(spec, [{"question": "q", "answer": "a"}])
    message = str(caught.value)
    assert "'instruction'" in message and "'output'" in message and "['answer', 'question']" in message
    assert "columns" in message


def test_invalid_rows_are_skipped_and_counted():
    spec = DatasetSpec(name="a", file_name="a.json")
    result = to_examples(spec, [{"instruction": "q", "output": ""}, {"instruction": "q", "output": "a"}])
    assert len(result.examples) == 1 and result.skipped == {"with an empty output": 1}
    chat = DatasetSpec(name="c", file_name="c.json", formatting="sharegpt")
    bad = {"conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}]}
    good = {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
    result = to_examples(chat, [bad, good])
    assert len(result.examples) == 1 and sum(result.skipped.values()) == 1


def test_all_rows_invalid_is_an_error():
    spec = DatasetSpec(name="a", file_name="a.json")
    with pytest.raises(DataError, match="no usable example"):
        to_examples(spec, [{"instruction": "q", "output": ""}])
