"""The engine choice (chat.engine, studio.chat.engines) and the vLLM engine's refusals, on a machine where vLLM
cannot run: what is loaded stays loaded when vLLM is refused, and the vLLM engine refuses by name what it cannot do
before it would need vLLM."""

from __future__ import annotations

import pytest
import torch

from studio.api import Studio
from studio.chat import ChatEngine, EngineError
from studio.chat.engines import check_served, engine_for, hf_engine
from studio.chat.gguf_engine import GgufEngine
from studio.chat.vllm_engine import VllmEngine
from studio.chat.vllm_options import VllmRefused
from studio.config import ChatConfig, GenerationConfig, ModelConfig, QuantizationConfig
from studio.errors import StudioError

VLLM = ChatConfig(engine="vllm")
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="vLLM is refused here for want of a CUDA GPU")


@no_gpu
def test_a_refused_vllm_leaves_the_loaded_model_answering(tmp_path, tiny_model_dir, strong_adapter):
    studio = Studio(tmp_path / "runs")
    model, quantization = ModelConfig(name_or_path=str(tiny_model_dir)), QuantizationConfig(method="none")
    studio.load_model(model, quantization)
    studio.load_adapter(str(strong_adapter), "strong")
    engine = studio.engine
    with pytest.raises(VllmRefused, match="vLLM needs a CUDA GPU; chat.engine: hf runs here"):
        studio.load_model(model, quantization, chat=VLLM)
    assert studio.engine is engine and engine.loaded and list(engine.adapters) == ["strong"]  # nothing unloaded
    answers = studio.engine.stream([[{"role": "user", "content": "你好"}]] * 2, [None, "strong"], _greedy())
    *_, final = answers
    assert all(answer.done and answer.tokens for answer in final)
    studio.load_model(model, quantization, chat=ChatConfig(engine="hf"))  # the default engine: the same one
    assert studio.engine is engine and engine.base_loads == 2
    studio.unload_model()


def _greedy() -> GenerationConfig:
    return GenerationConfig(temperature=0, max_new_tokens=4)


def test_the_engine_is_kept_while_its_kind_is_asked_and_replaced_otherwise():
    hf = ChatEngine()
    assert engine_for(hf, ChatConfig()) is hf and engine_for(None, ChatConfig()).__class__ is ChatEngine
    idle_vllm = VllmEngine(VLLM)  # holding no model: it gives way to the HF engine at once
    assert isinstance(engine_for(idle_vllm, ChatConfig()), ChatEngine)
    assert (
        hf_engine(hf) is hf and isinstance(hf_engine(idle_vllm), ChatEngine) and isinstance(hf_engine(None), ChatEngine)
    )


def test_a_gguf_file_gets_the_gguf_engine_whatever_chat_engine_says_for_hf():
    hf, gguf = ChatEngine(), "exports/model-q8_0.gguf"
    chosen = engine_for(hf, ChatConfig(engine="hf"), gguf)
    assert isinstance(chosen, GgufEngine) and chosen.base_only and not hf.base_only
    assert engine_for(chosen, ChatConfig(), "EXPORTS/MODEL.GGUF") is chosen  # kept for the next file
    assert isinstance(engine_for(chosen, ChatConfig(), "Qwen/Qwen2.5-0.5B"), ChatEngine)  # a folder: back to hf
    assert isinstance(hf_engine(chosen), ChatEngine)  # Evaluate's engine in its place
    assert chosen.combinations == {} and chosen.unload() == "No model is loaded."
    with pytest.raises(EngineError, match="Load the base model first"):
        chosen.template()


def test_a_gguf_file_is_refused_to_vllm_before_anything_else():
    refused = pytest.raises(VllmRefused, match="GGUF file, which Chat opens in llama.cpp itself")
    with refused:
        engine_for(ChatEngine(), VLLM, "exports/model-q8_0.gguf")


@no_gpu
def test_vllm_is_refused_before_a_model_or_adapter_is_read(tmp_path, strong_adapter):
    with pytest.raises(VllmRefused) as caught:
        engine_for(ChatEngine(), VLLM)
    assert caught.value.message.key == "engines.vllm_needs_cuda"
    check_served(ChatConfig(), [])  # the HF engine serves whatever read_adapter reads
    with pytest.raises(VllmRefused, match="vLLM needs a CUDA GPU"):
        check_served(VLLM, [])
    with pytest.raises(VllmRefused, match="vLLM needs a CUDA GPU"):  # load() checks too (a script may call it)
        VllmEngine(VLLM).load(ModelConfig(name_or_path=str(tmp_path / "model")), QuantizationConfig(method="none"))


def test_the_vllm_engine_refuses_by_name_what_it_cannot_do(tiny_model_dir, strong_adapter):
    engine = VllmEngine(VLLM)
    assert not engine.loaded and engine.adapters == {} and engine.combinations == {}
    whole = pytest.raises(VllmRefused, match="load its folder .* as the base model")
    with whole:  # a full run's model folder: refused before any model is asked for
        engine.load_adapter(str(tiny_model_dir), "full-run")
    with pytest.raises(VllmRefused, match="merge it in Export .* --combine"):
        engine.combine("mix", {"a": 0.5, "b": 0.5})
    with pytest.raises(EngineError, match="Load the base model first"):
        engine.load_adapter(str(strong_adapter))
    with pytest.raises(EngineError, match="Load the base model first"):
        next(engine.stream([[{"role": "user", "content": "hi"}]], [None], _greedy()))
    with pytest.raises(VllmRefused, match="Pictures go through the HF engine"):
        next(engine.stream([[{"role": "user", "content": "<image>hi"}]], [None], _greedy(), pictures=[["a.png"]]))
    with pytest.raises(EngineError, match="Load the base model first"):
        with engine.selected(None):
            pass
    assert engine.unload() == "No model is loaded."


class _RunningVllm:
    """What a vLLM engine holds once loaded (a CUDA GPU's vllm.LLM, which cannot run here): only its shutdown."""

    shut_down = False

    def shutdown(self) -> None:
        self.shut_down = True


def test_a_refused_path_leaves_the_other_engines_model_loaded(tmp_path):
    """The path is checked before the engine is switched: a refused one unloads nothing."""
    from studio.workspace import Workspace

    (tmp_path / "workspace").mkdir()
    studio = Studio(tmp_path / "runs", Workspace(tmp_path / "workspace"))
    held, running = VllmEngine(VLLM), _RunningVllm()
    held.model = running  # type: ignore[assignment]  # vLLM's model stands loaded
    studio._engine = held
    quantization = QuantizationConfig(method="none")
    refused = ((tmp_path / "workspace" / "missing", "not found"), (tmp_path / "elsewhere.gguf", "outside the served"))
    for path, refusal in refused:
        with pytest.raises(StudioError, match=refusal):
            studio.load_model(ModelConfig(name_or_path=str(path)), quantization, chat=ChatConfig(engine="hf"))
        assert studio.engine is held and held.loaded and not running.shut_down


def test_a_gguf_file_is_refused_to_the_endpoint_to_vllm_and_with_adapters_before_loading(strong_adapter):
    """`qlora-studio serve` refuses the file by its name alone (never the server's path); `qlora-studio chat`
    answers with it, but not with vLLM or adapters, and says so before a model loads."""
    from studio.adapters import AdapterError, read_adapter

    gguf = "/srv/secret/exports/model-q8_0.gguf"
    with pytest.raises(StudioError, match="model-q8_0.gguf is a GGUF file, which .* Chat only") as refused:
        check_served(ChatConfig(), [], gguf, endpoint=True)
    assert "/srv/secret" not in str(refused.value)
    check_served(ChatConfig(), [], gguf)  # Chat's, and `qlora-studio chat`'s
    with pytest.raises(VllmRefused, match="GGUF file, which Chat opens in llama.cpp itself"):
        check_served(VLLM, [], gguf)  # by name, before vLLM's own checks
    with pytest.raises(AdapterError, match="adapters do not apply"):
        check_served(ChatConfig(), [read_adapter(str(strong_adapter))], gguf)
    check_served(ChatConfig(), [], "Qwen/Qwen2.5-0.5B", endpoint=True)  # a model folder or hub id serves
