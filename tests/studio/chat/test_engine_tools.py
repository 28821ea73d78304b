"""The chat engine with tools and thinking on a real tiny model taught one tool conversation: it thinks, calls,
reads the tool's result and answers; base and adapter side by side get the same tools."""

import json

import pytest

from studio.chat import ChatEngine
from studio.chat.tools import ToolsError, function_call
from studio.config import GenerationConfig, ModelConfig, QuantizationConfig
from tests.support import make_adapter
from tests.support.tool_model import (
    ANSWER,
    ANSWER_THOUGHT,
    CALL,
    CALL_THOUGHT,
    OBSERVATION,
    QUESTION,
    TEMPLATE,
    TOOLS,
)

GREEDY = GenerationConfig(temperature=0, max_new_tokens=160)
ASKED = [{"role": "user", "content": QUESTION}]
CALLED = [("get_weather", json.dumps(CALL["arguments"]))]


@pytest.fixture
def engine(tool_model_dir):
    engine = ChatEngine()
    engine.load(
        ModelConfig(name_or_path=str(tool_model_dir), chat_template=TEMPLATE), QuantizationConfig(method="none")
    )
    yield engine
    engine.unload()


def _calls(answer) -> list[tuple[str, dict]]:
    return [(call.name, json.loads(call.arguments)) for call in answer.calls]


def test_the_model_thinks_calls_then_answers_from_the_observation(engine):
    assert engine.template() == engine.template().__class__("qwen3", tools=True, reasoning=True, thinking=True)
    updates = list(engine.stream([ASKED], [None], GREEDY, every_s=0, tools=json.dumps(TOOLS), thinking=True))
    called = updates[-1][0]
    assert called.thinking == CALL_THOUGHT and _calls(called) == [("get_weather", {"city": "Paris"})]
    assert called.text == "" and called.call_error is None and called.done
    assert any(u[0].thinking and not u[0].calls for u in updates[:-1])  # the thought streamed before the call came
    assert all("<" not in u[0].text for u in updates)  # the call's raw words were never shown

    observed = [*ASKED, function_call(CALLED), {"role": "observation", "content": OBSERVATION}]
    answered = engine.answer(observed, None, GREEDY, tools=TOOLS, thinking=True)
    assert (answered.thinking, answered.text, answered.calls) == (ANSWER_THOUGHT, ANSWER, [])


def test_an_answer_cut_short_names_its_unfinished_call(engine):
    whole = engine.answer(ASKED, None, GREEDY, tools=TOOLS, thinking=True)
    short = GenerationConfig(temperature=0, max_new_tokens=whole.tokens - 3)  # inside </tool_call>
    answer = engine.answer(ASKED, None, short, tools=TOOLS, thinking=True)
    assert answer.calls == [] and "Call 1 was never finished" in answer.call_error
    assert answer.text.startswith("<tool_call>")  # what the model wrote stays, for the user to see


def test_base_and_adapter_side_by_side_get_the_same_tools(engine, tool_model_dir, tmp_path):
    # an adapter too weak to change greedy answers: its row must answer exactly as the base's
    name = engine.load_adapter(str(make_adapter(tool_model_dir, tmp_path / "faint", seed=4, scale=1e-4))).name
    *_, (base, tuned) = engine.stream([ASKED, ASKED], [None, name], GREEDY, tools=TOOLS, thinking=True)
    for answer in (base, tuned):
        assert answer.thinking == CALL_THOUGHT and _calls(answer) == [("get_weather", {"city": "Paris"})]


def test_thinking_off_prompts_past_the_thought(engine):
    answer = engine.answer(ASKED, None, GREEDY, tools=TOOLS, thinking=False)
    assert answer.thinking == "" and not answer.text.startswith("<think>")


def test_bad_tools_are_refused_before_anything_is_generated(engine):
    with pytest.raises(ToolsError, match="Tool 1 is not a JSON object"):
        engine.answer(ASKED, None, GREEDY, tools="[1]")


def test_thinking_unsaid_is_the_templates_own_setting(engine):
    said, unsaid = (engine.answer(ASKED, None, GREEDY, tools=TOOLS, thinking=t) for t in (True, None))
    assert (unsaid.thinking, unsaid.calls, unsaid.tokens) == (said.thinking, said.calls, said.tokens)
