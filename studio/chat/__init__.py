"""Inference for Chat: one base model, any number of LoRA adapters, streamed side-by-side answers."""

from studio.chat.adapters import AdapterError, AdapterInfo, find_adapters
from studio.chat.engine import ChatEngine, EngineError

__all__ = ["AdapterError", "AdapterInfo", "ChatEngine", "EngineError", "find_adapters"]
