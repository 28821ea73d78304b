"""The tools box: function schemas checked with one error that names the tool and the key at fault."""

import json

import pytest

from studio.chat.tools import ToolsError, check_tools, function_call, with_tools

WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def test_a_list_of_schemas_is_kept_as_written_and_one_schema_is_listed():
    written = json.dumps([WEATHER], indent=2)
    assert check_tools(written) == written  # verbatim, as training keeps a dataset's tools text
    assert json.loads(check_tools(json.dumps(WEATHER))) == [WEATHER]
    wrapped = [{"type": "function", "function": WEATHER}, {"name": "now"}]  # OpenAI's shape; no parameters at all
    assert json.loads(check_tools(wrapped)) == wrapped
    assert check_tools("") == check_tools("  \n") == check_tools(None) == check_tools("[]") == ""


@pytest.mark.parametrize(
    ("tools", "said"),
    [
        ("[{name: 1}]", "The tools are not JSON (Expecting property name"),
        ('"get_weather"', "must be a JSON list of function schemas"),
        ("[1]", "Tool 1 is not a JSON object"),
        ([WEATHER, {"description": "no name"}], 'Tool 2: "name" must be a function name'),
        ([{"name": "get weather"}], 'not "get weather"'),
        ([{"name": "f", "description": 3}], 'Tool 1 (f): "description" must look like'),
        (
            [{"name": "f", "parameters": {"type": "string"}}],
            'Tool 1 (f): "parameters" must look like {"type": "object"',
        ),
        ([{"name": "f", "parameters": {"properties": []}}], '"parameters.properties" must look like'),
        ([{"name": "f", "parameters": {"properties": {"x": "int"}}}], '"parameters.properties.x" must look like'),
        ([{"name": "f", "parameters": {"properties": {}, "required": "x"}}], '"parameters.required" must look'),
        ([{"name": "f", "parameters": {"properties": {}, "required": ["x"]}}], 'names "x", which is not among'),
        ([WEATHER, WEATHER], "Tool 2 is named get_weather, like tool 1"),
        ([{"type": "function", "function": "f"}], 'Tool 1 (?): "function" must look like'),
    ],
)
def test_what_is_wrong_is_named(tools, said):
    with pytest.raises(ToolsError) as raised:
        check_tools(tools if isinstance(tools, str) else json.dumps(tools))
    assert said in str(raised.value)
    assert raised.value.text("zh") != str(raised.value)  # said in the reader's language too


def test_tools_ride_on_the_system_turn_and_calls_become_a_function_call_turn():
    question = [{"role": "user", "content": "Hi"}]
    assert with_tools(question, "[]x") == [{"role": "system", "content": "", "tools": "[]x"}, *question]
    system = [{"role": "system", "content": "Be brief."}]
    assert with_tools(system + question, "T")[0] == {"role": "system", "content": "Be brief.", "tools": "T"}
    assert with_tools(question, "") is question
    turn = function_call([("get_weather", '{"city": "Paris"}')])
    assert turn == {"role": "function_call", "content": '[{"name": "get_weather", "arguments": {"city": "Paris"}}]'}
