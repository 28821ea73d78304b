"""A chat with tools in a Chatbot pane: thought, text and call cards shown, and read back (through Gradio's own
Chatbot, as the page hands the pane over) into the turns training knows."""

import json

import gradio as gr

from app import tool_cards
from studio.chat.streaming import Answer
from studio.locales import say
from studio.modeling.tool_parsing import ToolCall

CALL = ToolCall("get_weather", '{"city": "Paris"}')


def _through_the_page(history: list) -> list:
    """The pane's messages as the next handler receives them: Chatbot's postprocess to the page, preprocess back."""
    chatbot = gr.Chatbot()
    return chatbot.preprocess(chatbot.postprocess(history))


def test_a_call_its_result_and_the_answer_read_back_as_training_turns():
    history = [tool_cards.question("Weather in Paris?", False, "en", 0)]
    called = Answer("Let me check.", 30, 1.0, True, thinking="Look it up.", calls=[CALL])
    history += tool_cards.answer_messages(called, "en", len(history))
    history.append(tool_cards.question('{"temperature": 21}', True, "en", len(history)))
    history += tool_cards.answer_messages(Answer("It is 21.", 5, 1.0, True, thinking="Fine."), "en", len(history))

    assert [m.get("metadata", {}).get("title") for m in history] == [
        None,
        "💭 Thinking",
        None,
        "🛠️ Calls get_weather",
        "🔧 Tool result",
        "💭 Thinking",
        None,
    ]
    assert json.loads(history[3]["content"].strip("`").removeprefix("json")) == {
        "name": "get_weather",
        "arguments": {"city": "Paris"},
    }
    assert tool_cards.conversation(_through_the_page(history)) == [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "function_call", "content": '[{"name": "get_weather", "arguments": {"city": "Paris"}}]'},
        {"role": "observation", "content": '{"temperature": 21}'},
        {"role": "assistant", "content": "It is 21."},
    ]
    assert not tool_cards.ends_with_call(history) and tool_cards.ends_with_call(history[:4])


def test_a_thought_is_open_while_it_streams_and_folded_once_the_answer_begins():
    thinking = tool_cards.answer_messages(Answer("", 3, 0.1, False, thinking="Hmm"), "en", 1)
    answering = tool_cards.answer_messages(Answer("It", 4, 0.1, False, thinking="Hmm."), "en", 1)
    assert [m["metadata"]["status"] for m in (thinking[0], answering[0])] == ["pending", "done"]
    assert len(thinking) == 1 and answering[1] == {"role": "assistant", "content": "It"}


def test_a_call_that_could_not_be_read_stays_the_models_text_and_is_named():
    error = say("chat.call_not_json", index=1, error="Expecting value")
    raw = '<tool_call>\n{"name": "get_weather", "arguments": }\n</tool_call>'
    shown = tool_cards.answer_messages(Answer(raw, 20, 1.0, True, call_error=error), "zh", 1)
    assert shown[0]["content"] == raw and shown[1]["metadata"]["title"] == "⚠️ 无法读取的调用"
    assert shown[1]["content"] == error.text("zh")
    history = [tool_cards.question("Weather?", False, "zh", 0), *shown]
    assert tool_cards.conversation(_through_the_page(history))[-1] == {"role": "assistant", "content": raw}


def test_a_plain_chat_reads_back_as_before():
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    assert tool_cards.conversation(_through_the_page(history)) == history
    assert tool_cards.answer_messages(Answer("", 0, 0.0, False), "en", 1) == [{"role": "assistant", "content": ""}]
