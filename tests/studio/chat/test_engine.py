"""The chat engine on the tiny model: side by side, adapter switching, unloading, refusals."""

import pytest

from studio.chat import AdapterError, ChatEngine, EngineError
from studio.config import GenerationConfig, ModelConfig, QuantizationConfig

GREEDY = GenerationConfig(temperature=0, max_new_tokens=12, repetition_penalty=1.0)
QUESTION = [{"role": "user", "content": "你是谁？"}]


@pytest.fixture
def engine(tiny_model_dir):
    engine = ChatEngine()
    engine.load(ModelConfig(name_or_path=str(tiny_model_dir)), QuantizationConfig(method="none"))
    yield engine
    engine.unload()


def test_side_by_side_differs_and_disabled_adapter_equals_base(engine, strong_adapter):
    base_alone = engine.answer(QUESTION, None, GREEDY)
    name = engine.load_adapter(str(strong_adapter)).name
    updates = list(engine.stream([QUESTION, QUESTION], [None, name], GREEDY))
    base, tuned = updates[-1]
    assert base.text == base_alone.text  # the adapter disabled is exactly the base model
    assert tuned.text != base.text and tuned.tokens > 0
    assert len(updates) > 2  # streamed token by token, not delivered at the end
    assert engine.answer(QUESTION, None, GREEDY).text == base_alone.text
    assert engine.answer(QUESTION, name, GREEDY).text == tuned.text


def test_second_adapter_switching_without_reloading_the_base(engine, strong_adapter, second_adapter):
    first = engine.load_adapter(str(strong_adapter)).name
    second = engine.load_adapter(str(second_adapter)).name
    a, b = engine.answer(QUESTION, first, GREEDY).text, engine.answer(QUESTION, second, GREEDY).text
    assert a != b and engine.base_loads == 1
    engine.unload_adapter(first)
    assert engine.answer(QUESTION, second, GREEDY).text == b
    engine.unload_adapter(second)
    assert type(engine.model).__name__ == "Qwen2ForCausalLM"  # no LoRA layers left behind


def test_adapter_for_another_architecture_is_refused(engine, foreign_adapter):
    with pytest.raises(AdapterError, match="does not fit the loaded base model"):
        engine.load_adapter(str(foreign_adapter))
    assert engine.adapters == {} and type(engine.model).__name__ == "Qwen2ForCausalLM"


def test_not_an_adapter_and_no_model(tmp_path, engine):
    with pytest.raises(AdapterError, match="no adapter_config.json"):
        engine.load_adapter(str(tmp_path))
    with pytest.raises(EngineError, match="No model is loaded"):
        ChatEngine().answer(QUESTION, None, GREEDY)


def test_stop_ends_generation_at_once(engine):
    import threading

    stop = threading.Event()
    long = GenerationConfig(temperature=0, max_new_tokens=500)
    seen = 0
    for seen, answers in enumerate(engine.stream([QUESTION], [None], long, stop), start=1):  # noqa: B007 (checked below)
        if seen == 3:
            stop.set()
    assert seen < 10 and answers[0].tokens < 10


def test_unload_gives_the_memory_back(tmp_path):
    from studio.chat.memory import read_memory
    from studio.modeling.tiny import build_tiny_model

    model_dir = build_tiny_model(tmp_path / "mid", hidden=512, layers=6)  # ~60 MB in fp32, ~30 MB in bf16
    engine = ChatEngine()
    before = read_memory()
    engine.load(ModelConfig(name_or_path=str(model_dir)), QuantizationConfig(method="none"))
    engine.answer(QUESTION, None, GREEDY)  # weights may be mapped lazily: touch them all
    weights_mib = sum(p.numel() * p.element_size() for p in engine.model.parameters()) / 2**20
    loaded = read_memory()
    engine.unload()
    after = read_memory()
    assert loaded.rss_mib - before.rss_mib > 0.7 * weights_mib > 20
    assert loaded.rss_mib - after.rss_mib > 0.7 * (loaded.rss_mib - before.rss_mib)


def test_sampling_is_reproducible_with_a_seed(engine):
    sampled = GenerationConfig(temperature=1.0, max_new_tokens=10, seed=7)
    assert engine.answer(QUESTION, None, sampled).text == engine.answer(QUESTION, None, sampled).text
