"""Which engine answers in Chat, `qlora-studio chat`/`serve` and the OpenAI endpoint (chat.engine).

'hf' is studio.chat.engine.ChatEngine (transformers and peft, the default, and the one Evaluate and reward scores
use); 'vllm' is studio.chat.vllm_engine.VllmEngine. Both offer what Chat and the endpoint use (`Engine`). One model
is in memory at a time: loading with the other engine unloads the current one's model first, and an engine that
cannot run here is refused before anything is unloaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

from studio.chat.vllm_options import VllmRefused, check_servable, check_vllm

if TYPE_CHECKING:
    from studio.adapters import AdapterInfo
    from studio.chat.engine import ChatEngine
    from studio.chat.vllm_engine import VllmEngine
    from studio.config import ChatConfig

    Engine: TypeAlias = ChatEngine | VllmEngine


def engine_for(current: Engine | None, settings: ChatConfig, model_name: str = "") -> Engine:
    """The engine `settings.engine` names, to load `model_name` with: `current` when it is that engine (vLLM's
    settings taken for its next load), else a new one, `current`'s model unloaded first."""
    from studio.chat.engine import ChatEngine
    from studio.chat.vllm_engine import VllmEngine

    fresh: Engine
    if settings.engine == "vllm":
        if model_name.lower().endswith(".gguf"):  # the HF engine opens a GGUF file in llama.cpp itself
            raise VllmRefused("engines.vllm_no_gguf", name=model_name)
        if isinstance(current, VllmEngine):  # checked when made here, or by its own load: nothing else to unload
            current.settings = settings
            return current
        check_vllm()  # before the HF engine's model is unloaded
        fresh = VllmEngine(settings, checked=True)
    else:
        if isinstance(current, ChatEngine):
            return current
        fresh = ChatEngine()
    if current is not None and current.loaded:
        current.unload()
    return fresh


def hf_engine(current: Engine | None) -> ChatEngine:
    """The HF engine, for what only it does (Evaluate, a reward model's score): `current` when it is that one, a new
    one in place of a vLLM engine that holds no model; refused while vLLM holds one, which Chat may be using."""
    from studio.chat.engine import ChatEngine

    if isinstance(current, ChatEngine):
        return current
    if current is not None and current.loaded:
        raise VllmRefused("engines.vllm_holds_model", name=current.model_name)
    return ChatEngine()


def check_served(settings: ChatConfig, adapters: list[AdapterInfo]) -> None:
    """Refuse, before a minute of model loading, an engine that cannot run here or an adapter it cannot serve."""
    if settings.engine != "vllm":
        return
    check_vllm()
    for info in adapters:
        check_servable(info, settings.max_lora_rank)
