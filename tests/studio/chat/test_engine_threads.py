"""The engine driven the way a page drives it: each step of an answer on whichever thread is free, an answer
closed or dropped from yet another thread, then a model change."""

import gc
import threading

import pytest

from studio.config import GenerationConfig

GREEDY = GenerationConfig(temperature=0, max_new_tokens=24, repetition_penalty=1.0)
ENDLESS = GenerationConfig(temperature=0, max_new_tokens=8192, repetition_penalty=1.0)
QUESTION = [{"role": "user", "content": "你是谁？"}]


def _on_new_thread(action):
    """`action()` on a thread of its own, as Gradio runs each step of a generator handler; its result or error."""
    outcome = {}

    def run():
        try:
            outcome["value"] = action()
        except BaseException as error:  # StopIteration included: handed back to the test
            outcome["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive(), "a step of the answer never returned"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def test_an_answer_stepped_from_other_threads_then_a_model_change_succeeds(engine, strong_adapter):
    name = engine.load_adapter(str(strong_adapter)).name
    alone = engine.answer(QUESTION, name, GREEDY)
    answers, updates = engine.stream([QUESTION, QUESTION], [None, name], GREEDY, every_s=0), []
    while True:
        try:
            updates.append(_on_new_thread(lambda: next(answers)))
        except StopIteration:
            break
    assert len(updates) > 1 and updates[-1][1].text == alone.text and all(a.done for a in updates[-1])
    engine.unload_adapter(name)  # waited up to 30 s, then refused as busy, while the old lock stayed held
    assert engine.load_adapter(str(strong_adapter)).name == name
    assert engine.answer(QUESTION, name, GREEDY).text == alone.text


@pytest.mark.parametrize("leave", ["closed", "dropped"])
def test_an_answer_left_midway_ends_its_generation_and_frees_the_engine(engine, strong_adapter, monkeypatch, leave):
    generated = []
    generate = engine.model.generate

    def counted(**kwargs):  # how many tokens the generation made before it ended
        output = generate(**kwargs)
        generated.append(output.shape[1] - kwargs["input_ids"].shape[1])
        return output

    monkeypatch.setattr(engine.model, "generate", counted)
    answers = engine.stream([QUESTION], [None], ENDLESS, every_s=0)
    for _ in range(3):
        _on_new_thread(lambda: next(answers))
    if leave == "closed":  # Gradio closes an abandoned handler from its event loop, not the thread that stepped it
        answers.close()
    else:  # a caller that simply stops iterating
        del answers
        gc.collect()
    engine.load_adapter(str(strong_adapter))  # waits for the generation to let go of the engine
    assert generated and generated[0] < 1000, generated  # it stopped, instead of running on to 8192 tokens


def test_an_answer_stopped_while_it_waits_for_the_engine_never_generates(engine):
    stop, updates = threading.Event(), []
    answers = engine.stream([QUESTION], [None], GREEDY, stop, every_s=0)
    with engine._changing():  # a model change holds the engine while the answer waits for it
        reader = threading.Thread(target=lambda: updates.extend(answers))
        reader.start()
        stop.set()
    reader.join(timeout=60)
    assert not reader.is_alive() and updates[-1][0].tokens == 0 and updates[-1][0].done
