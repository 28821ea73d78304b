"""Chat with a GGUF file through llama.cpp itself (real llama-cpp-python): an engine of its own, chosen by the file's
name; it streams, answers as the model it was written from, takes no adapter or tools, gives way to a model folder,
and is confined to the workspace like any model path."""

import subprocess
import sys
import threading

import pytest
import torch

from studio.adapters import AdapterError
from studio.api import Studio
from studio.chat import ChatEngine, EngineError
from studio.chat.gguf_engine import GgufEngine
from studio.config import ChatConfig, GenerationConfig, ModelConfig, QuantizationConfig
from studio.errors import PathNotAllowed, StudioError
from studio.modeling.llama_cpp import PIP_COMMAND, LlamaCppMissing
from studio.workspace import Workspace
from tests.support import make_gguf

GREEDY = GenerationConfig(temperature=0, max_new_tokens=12, repetition_penalty=1.0)
QUESTION = [{"role": "user", "content": "你是谁？"}]


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory, tiny_model_dir):
    """The tiny model written as an f16 GGUF with its tokenizer and the studio's chat template."""
    return make_gguf(tiny_model_dir, tmp_path_factory.mktemp("gguf") / "tiny-f16.gguf")


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
    assert studio.engine.base_only and not studio.engine.sees_pictures and studio.engine.adapters == {}
    with pytest.raises(AdapterError, match="adapters do not apply"):
        studio.load_adapter(str(strong_adapter))
    with pytest.raises(AdapterError, match="adapters do not apply"):
        list(studio.engine.stream([QUESTION], ["strong"], GREEDY))
    tools = '[{"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {}}}]'
    with pytest.raises(StudioError, match="plain text turns"):
        list(studio.stream([QUESTION], [None], GREEDY, tools=tools))
    for reaching_into_the_model in (lambda: studio.engine.selected(None), lambda: studio.combine_adapters("m", {})):
        # the OpenAI endpoint, Combine; the file's name only, never the server's path to it
        with pytest.raises(EngineError, match="^The loaded model is the GGUF file tiny-f16.gguf, which answers"):
            reaching_into_the_model()
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


def test_a_gguf_file_gets_its_own_engine_and_a_model_folder_unloads_it(studio, gguf_file, tiny_model_dir):
    """The file's name chooses llama.cpp whatever chat.engine says for hf; loading a model folder next switches
    back to the HF engine, the file unloaded first (one model in memory), and so does Evaluate's HF engine."""
    hf, none = ChatConfig(engine="hf"), QuantizationConfig(method="none")
    studio.load_model(ModelConfig(name_or_path=str(tiny_model_dir)), none, chat=hf)
    folder_engine = studio.engine
    studio.load_model(ModelConfig(name_or_path=str(gguf_file)), none, chat=hf)
    gguf_engine = studio.engine
    assert isinstance(gguf_engine, GgufEngine) and gguf_engine.loaded and not folder_engine.loaded
    assert gguf_engine.model_name == str(gguf_file) and studio.openai_endpoint.models() == {gguf_file.name: None}
    studio.load_model(ModelConfig(name_or_path=str(tiny_model_dir)), none, chat=hf)
    assert isinstance(studio.engine, ChatEngine) and studio.engine.loaded and not gguf_engine.loaded
    studio.load_model(ModelConfig(name_or_path=str(gguf_file)), none)
    gguf_engine = studio.engine
    assert studio._hf_engine() is studio.engine and not gguf_engine.loaded  # Evaluate loads the run's model


# A GGUF file's answer held at a gate (a pause after llama.cpp's second token, so it holds the engine) while the file
# is unloaded; the reader reads the rest after llama.cpp freed the model, which would end the process (SIGSEGV) were
# it read from there: run apart so that cannot end pytest. argv: the file, the runs folder, how the answer ends.
UNLOAD_WHILE_STREAMING = """
import sys, threading
import studio.modeling.llama_cpp as llama_cpp
from studio.api import Studio
from studio.chat import EngineError
from studio.config import GenerationConfig, ModelConfig, QuantizationConfig

studio = Studio(sys.argv[2])
studio.load_model(ModelConfig(name_or_path=sys.argv[1]), QuantizationConfig(method="none"))
engine, chat = studio.engine, studio.engine.model
question = [{"role": "user", "content": "你是谁？"}]
long = GenerationConfig(temperature=0, max_new_tokens=300, repetition_penalty=1.0)
whole = engine.answer(question, None, long)
gate, sample, seen = threading.Event(), llama_cpp.sample, []

def gated(*args, **kwargs):  # llama.cpp's own tokens, held after the second until the unload is waiting
    for count, token in enumerate(sample(*args, **kwargs), start=1):
        seen.append(token)
        yield token
        if count == 2:
            gate.wait()
            if sys.argv[3] == "fails":
                raise RuntimeError("llama.cpp failed mid-row")

llama_cpp.sample = gated
answers = engine.stream([question], [None], long, every_s=0)
first = next(answers)
assert not first[0].done and not engine._lock.acquire(blocking=False), "the answer let go of the engine"
unloading = threading.Thread(target=studio.unload_model)
unloading.start()
unloading.join(timeout=0.5)
assert unloading.is_alive() and engine.loaded, "the unload did not wait for the answer"
gate.set()
unloading.join()  # the answer ended, then llama.cpp's model was freed
assert not engine.loaded
try:
    rest = list(answers)
except RuntimeError as failed:  # the row's own error, not the model's change
    assert sys.argv[3] == "fails" and str(failed) == "Generation failed: RuntimeError: llama.cpp failed mid-row"
else:
    assert sys.argv[3] == "whole" and rest[-1][0].done and rest[-1][0].text == whole.text, (rest[-1][0], whole)
part = chat.vocabulary.decode(seen[:1])  # what the reader saw of the row still reads, from the text remembered
assert part and whole.text.startswith(part.rstrip("\ufffd")), (part, whole.text)
for after_close in (lambda: chat.vocabulary.decode([1, 2, 3]), lambda: chat.prompt(question)):
    try:
        after_close()
    except EngineError as refused:
        assert "model changed" in str(refused), refused
    else:
        raise AssertionError("read after the close")
print("read", sys.argv[3])
"""


@pytest.mark.parametrize("ending", ["whole", "fails"])
def test_an_unload_while_a_gguf_answer_streams_waits_and_leaves_the_answer_readable(tmp_path, gguf_file, ending):
    """The unload waits for the answer; the reader still reads it in full, or its own error where llama.cpp failed
    mid-row, and whatever asks the closed file for more than it answered is refused as an answer whose model
    changed, never read from freed memory."""
    pytest.importorskip("llama_cpp")
    done = subprocess.run(
        [sys.executable, "-c", UNLOAD_WHILE_STREAMING, str(gguf_file), str(tmp_path / "runs"), ending],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and f"read {ending}" in done.stdout, (done.returncode, done.stderr[-3000:])


# A GgufChat dropped without a close: its finaliser frees llama.cpp's model, and a reader's daemon thread that
# decodes afterwards (at exit, say) is refused rather than read freed memory; run apart, as above.
DROPPED = """
import gc, sys, weakref
from pathlib import Path
from studio.chat import EngineError
from studio.chat.gguf_engine import GgufChat

chat = GgufChat.open(Path(sys.argv[1]))
vocabulary, dropped = chat.vocabulary, weakref.ref(chat)
assert vocabulary.decode(vocabulary.tokenize("hello")) == "hello"
del chat
gc.collect()
assert dropped() is None, "the finaliser keeps the chat alive"
try:
    vocabulary.decode([5])
except EngineError as refused:
    assert "model changed" in str(refused), refused
else:
    raise AssertionError("read after the model was freed")
print("refused")
"""


def test_a_dropped_gguf_chat_closes_its_vocabulary_before_freeing_the_model(gguf_file):
    pytest.importorskip("llama_cpp")
    done = subprocess.run([sys.executable, "-c", DROPPED, str(gguf_file)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "refused" in done.stdout, (done.returncode, done.stderr[-3000:])


def test_a_files_own_template_that_refuses_the_conversation_says_what_to_change(studio, gguf_file):
    """The file's template raising (Gemma's takes no system turn) reaches the reader as the user's to fix, in any
    language, with the template's own words."""
    from studio.chat.prompts import TemplateRefused
    from tests.support import SYSTEMLESS_TEMPLATE

    studio.load_model(ModelConfig(name_or_path=str(gguf_file)), QuantizationConfig(method="none"))
    studio.engine.model.template = SYSTEMLESS_TEMPLATE
    assert studio.engine.answer(QUESTION, None, GREEDY).done  # no system turn: it renders
    with pytest.raises(TemplateRefused, match="“System role not supported”. If it takes no system prompt") as refused:
        list(studio.engine.stream([QUESTION], [None], GREEDY.model_copy(update={"system_prompt": "Be brief."})))
    assert "系统提示词" in refused.value.text("zh")
    assert studio.engine.answer(QUESTION, None, GREEDY).done  # the engine answers on


def test_a_mistyped_gguf_path_or_no_llama_cpp_leaves_the_loaded_model(tmp_path, gguf_file, tiny_model_dir, monkeypatch):
    studio, none = Studio(tmp_path / "runs"), QuantizationConfig(method="none")
    studio.load_model(ModelConfig(name_or_path=str(tiny_model_dir)), none)
    loaded = studio.engine
    with pytest.raises(StudioError, match="typo.gguf is not a file"):
        studio.load_model(ModelConfig(name_or_path=str(tmp_path / "typo.gguf")), none)
    for name, start in (("renamed.gguf", b"PK\x03\x04 a zip file"), ("cut-short.gguf", b"GG")):
        (tmp_path / name).write_bytes(start)  # llama.cpp would refuse it only after the loaded model was unloaded
        with pytest.raises(StudioError, match=f"^{name} is not a GGUF file .*Download or export it again"):
            studio.load_model(ModelConfig(name_or_path=str(tmp_path / name)), none)
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # `import llama_cpp` fails as when it is not installed
    with pytest.raises(LlamaCppMissing, match="pip install"):
        studio.load_model(ModelConfig(name_or_path=str(gguf_file)), none)
    assert studio.engine is loaded and loaded.loaded  # refused before anything was unloaded
    loaded.unload()


def test_evaluate_and_scores_refused_early_leave_the_gguf_file_loaded(
    studio, gguf_file, tiny_config, tmp_path, strong_adapter
):
    """Evaluate and a reward score need the HF engine, which unloads the file, but only once their cheap checks
    pass: nothing to evaluate, or a folder that is no adapter, leaves Chat's file answering; a real score then
    loads the run's model in its place."""
    import shutil

    from safetensors.torch import save_file

    from studio.evaluation.benchmarks import BenchmarkError

    studio.load_model(ModelConfig(name_or_path=str(gguf_file)), QuantizationConfig(method="none"))
    nothing = tiny_config(**{"evaluation.held_out": "false"})
    with pytest.raises(BenchmarkError):
        studio.evaluate(nothing, None, compare=False)
    not_an_adapter = tmp_path / "empty"
    not_an_adapter.mkdir()
    with pytest.raises(AdapterError):
        studio.score_text(tiny_config(), str(not_an_adapter), "question", "answer")
    assert isinstance(studio.engine, GgufEngine) and studio.engine.loaded
    assert studio.engine.answer(QUESTION, None, GREEDY).done
    reward = tmp_path / "rm-run" / "adapter"  # an rm run's adapter: its value head and the run's config beside it
    shutil.copytree(strong_adapter, reward)
    save_file(
        {"v_head.summary.weight": torch.ones(1, 64), "v_head.summary.bias": torch.zeros(1)},
        reward / "value_head.safetensors",
    )
    config = tiny_config(**{"quantization.method": "none"})
    config.with_overrides({"training.stage": "rm"}).save(reward / "studio_config.yaml")
    gguf_engine = studio.engine
    assert isinstance(studio.score_text(config, str(reward), "question", "answer"), float)
    assert isinstance(studio.engine, ChatEngine) and studio.engine.loaded and not gguf_engine.loaded
