"""Chat with a GGUF file through llama.cpp itself (real llama-cpp-python): it streams, answers as the model it was
written from, takes no adapter or tools, and is confined to the workspace like any model path."""

import sys
import threading

import pytest

from studio.adapters import AdapterError
from studio.api import Studio
from studio.chat import ChatEngine, EngineError
from studio.config import GenerationConfig, ModelConfig, QuantizationConfig
from studio.errors import PathNotAllowed, StudioError
from studio.modeling.llama_cpp import PIP_COMMAND, LlamaCppMissing
from studio.workspace import Workspace

GREEDY = GenerationConfig(temperature=0, max_new_tokens=12, repetition_penalty=1.0)
QUESTION = [{"role": "user", "content": "你是谁？"}]


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory, tiny_model_dir):
    """The tiny model written as an f16 GGUF with its tokenizer and the studio's chat template."""
    from transformers import AutoModelForCausalLM

    from studio.export.gguf_types import GGUF_TYPES
    from studio.export.gguf_writer import write_gguf
    from studio.modeling.loader import load_tokenizer

    path = tmp_path_factory.mktemp("gguf") / "tiny-f16.gguf"
    tokenizer = load_tokenizer(ModelConfig(name_or_path=str(tiny_model_dir)), str(tiny_model_dir))
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    return write_gguf(path, model, tokenizer, GGUF_TYPES["f16"], name="tiny", pre="qwen2")


@pytest.fixture
def studio(tmp_path):
    pytest.importorskip("llama_cpp")
    studio = Studio(tmp_path / "runs")
    yield studio
    if studio.engine.loaded:
        studio.unload_model()


def test_a_gguf_file_streams_the_answer_of_the_model_it_was_written_from(studio, gguf_file, tiny_model_dir):
    said = studio.load_model(ModelConfig(name_or_path=str(gguf_file)), QuantizationConfig(method="none"))
    assert "llama.cpp" in said and studio.engine.template().name == "chatml"  # the file's own template
    answer = studio.engine.answer(QUESTION, None, GREEDY)
    assert answer.done and 0 < answer.tokens <= GREEDY.max_new_tokens
    # token by token (llama.cpp writes the tiny model's dozen tokens faster than a reader wakes: a longer answer)
    longer = GenerationConfig(temperature=0, max_new_tokens=300, repetition_penalty=1.0)
    updates = [u[0].tokens for u in studio.engine.stream([QUESTION], [None], longer, every_s=0)]
    assert len(updates) > 2 and updates == sorted(updates)
    transformers_chat = ChatEngine()  # the same model from its folder, in the studio's own engine
    transformers_chat.load(ModelConfig(name_or_path=str(tiny_model_dir)), QuantizationConfig(method="none"))
    try:
        expected = transformers_chat.answer(QUESTION, None, GREEDY)
    finally:
        transformers_chat.unload()
    assert (answer.tokens, answer.text) == (expected.tokens, expected.text)  # f16 answers as the model did


def test_stop_ends_a_gguf_answer_and_the_next_one_starts_afresh(studio, gguf_file):
    studio.load_model(ModelConfig(name_or_path=str(gguf_file)), QuantizationConfig(method="none"))
    stop, long = threading.Event(), GenerationConfig(temperature=0, max_new_tokens=400)
    seen = 0
    for seen, answers in enumerate(studio.engine.stream([QUESTION], [None], long, stop, every_s=0), start=1):  # noqa: B007
        if seen == 3:
            stop.set()
    # ended at the next token after the third update (llama.cpp writes the tiny model's tokens fast: many per update)
    assert seen <= 5 and answers[0].done and answers[0].tokens < long.max_new_tokens
    first = studio.engine.answer(QUESTION, None, GREEDY)
    assert studio.engine.answer(QUESTION, None, GREEDY).text == first.text  # greedy, whatever came before


def test_adapters_tools_and_other_uses_are_refused_by_name(studio, gguf_file, strong_adapter):
    studio.load_model(ModelConfig(name_or_path=str(gguf_file)), QuantizationConfig(method="none"))
    with pytest.raises(AdapterError, match="adapters do not apply"):
        studio.load_adapter(str(strong_adapter))
    with pytest.raises(AdapterError, match="adapters do not apply"):
        list(studio.engine.stream([QUESTION], ["strong"], GREEDY))
    tools = '[{"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {}}}]'
    with pytest.raises(StudioError, match="plain text turns"):
        list(studio.stream([QUESTION], [None], GREEDY, tools=tools))
    with pytest.raises(EngineError, match="answers in Chat only"):
        studio.engine.answers([QUESTION], [None], GREEDY)
    assert "Unloaded" in studio.unload_model() and not studio.engine.loaded


def test_a_gguf_path_is_confined_to_the_workspace(tmp_path, gguf_file):
    served = Studio(tmp_path / "runs", Workspace.serve(tmp_path, tmp_path / "runs"))
    with pytest.raises(PathNotAllowed):
        served.load_model(ModelConfig(name_or_path=str(gguf_file)), QuantizationConfig(method="none"))
    with pytest.raises(StudioError, match="is not a file"):
        served.load_model(ModelConfig(name_or_path="missing.gguf"), QuantizationConfig(method="none"))
    assert not served.engine.loaded


def test_without_llama_cpp_python_chat_says_what_to_install(tmp_path, gguf_file, monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # `import llama_cpp` fails as when it is not installed
    with pytest.raises(LlamaCppMissing) as refused:
        Studio(tmp_path / "runs").load_model(ModelConfig(name_or_path=str(gguf_file)), QuantizationConfig())
    assert PIP_COMMAND in str(refused.value) and "scripts/setup.sh gguf-check" in str(refused.value)
