"""Which engine answers in Chat, `qlora-studio chat`/`serve` and the OpenAI endpoint (chat.engine, and the model).

'hf' is studio.chat.engine.ChatEngine (transformers and peft, the default, and the one Evaluate and reward scores
use); 'vllm' is studio.chat.vllm_engine.VllmEngine; a model name ending in .gguf is a GGUF file, which
studio.chat.gguf_engine.GgufEngine opens in llama.cpp whatever chat.engine says for hf (vllm refuses it by name).
All offer what Chat and the endpoint use (`Engine`, their shared part studio.chat.engine_base). One model is in
memory at a time: loading with another engine unloads the current one's model first, and an engine that cannot run
here is refused before anything is unloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from studio.chat.vllm_options import VllmRefused, check_servable, check_vllm

if TYPE_CHECKING:
    from studio.adapters import AdapterInfo
    from studio.chat.engine import ChatEngine
    from studio.chat.gguf_engine import GgufEngine
    from studio.chat.vllm_engine import VllmEngine
    from studio.config import ChatConfig

    Engine: TypeAlias = ChatEngine | VllmEngine | GgufEngine


def is_gguf(model_name: str) -> bool:
    """Whether the model is a GGUF file (answered by llama.cpp, studio.chat.gguf_engine) rather than a model folder."""
    return model_name.lower().endswith(".gguf")


def engine_for(current: Engine | None, settings: ChatConfig, model_name: str = "") -> Engine:
    """The engine that loads `model_name`: a GGUF file's, else the one `settings.engine` names; `current` when it is
    that engine (vLLM's settings taken for its next load), else a new one, `current`'s model unloaded first."""
    from studio.chat.engine import ChatEngine
    from studio.chat.gguf_engine import GgufEngine
    from studio.chat.vllm_engine import VllmEngine

    fresh: Engine
    if settings.engine == "vllm" and is_gguf(model_name):  # refused by name rather than opened in llama.cpp
        raise VllmRefused("engines.vllm_no_gguf", name=model_name)
    if is_gguf(model_name):
        if isinstance(current, GgufEngine):
            return current
        fresh = GgufEngine()
    elif settings.engine == "vllm":
        if isinstance(current, VllmEngine):  # checked when made here, or by its own load: nothing else to unload
            current.settings = settings
            return current
        check_vllm()  # before the other engine's model is unloaded
        fresh = VllmEngine(settings, checked=True)
    else:
        if isinstance(current, ChatEngine):
            return current
        fresh = ChatEngine()
    if current is not None and current.loaded:
        current.unload()
    return fresh


def hf_engine(current: Engine | None) -> ChatEngine:
    """The HF engine, for what only it does (Evaluate, a reward model's score): `current` when it is that one, else a
    new one; refused while vLLM holds a model, which Chat may be using. A GGUF file gives way, as a model on the HF
    engine gives way to the run's model Evaluate loads."""
    from studio.chat.engine import ChatEngine

    if isinstance(current, ChatEngine):
        return current
    check_hf(current)
    if current is not None and current.loaded:
        current.unload()
    return ChatEngine()


def check_hf(current: Engine | None) -> None:
    """Refuse, before anything is loaded or unloaded, to put the HF engine in place of vLLM holding a model."""
    from studio.chat.vllm_engine import VllmEngine

    if isinstance(current, VllmEngine) and current.loaded:
        raise VllmRefused("engines.vllm_holds_model", name=current.model_name)


def check_served(
    settings: ChatConfig, adapters: list[AdapterInfo], model_name: str = "", *, endpoint: bool = False
) -> None:
    """Refuse, before a minute of model loading, an engine that cannot run here or an adapter it cannot serve; for
    the OpenAI `endpoint` (`qlora-studio serve`), a GGUF file too, which answers in Chat alone."""
    from studio.adapters import AdapterError
    from studio.errors import StudioError

    if endpoint and is_gguf(model_name):  # the file's name alone: said to whoever starts the server, no more
        raise StudioError("engines.gguf_not_served", name=Path(model_name).name)
    if adapters and is_gguf(model_name):  # a merged model: GgufEngine would refuse each adapter after the load
        raise AdapterError("chat.gguf_no_adapters", path=model_name)
    if settings.engine != "vllm":
        return
    if is_gguf(model_name):
        raise VllmRefused("engines.vllm_no_gguf", name=model_name)
    check_vllm()
    for info in adapters:
        check_servable(info, settings.max_lora_rank)
