"""Inference for Chat: one base model, any number of LoRA adapters, streamed side-by-side answers."""

from studio.adapters import AdapterError, AdapterInfo, AdapterScan, read_adapter, scan_adapters
from studio.chat.engine import ChatEngine, EngineError

__all__ = ["AdapterError", "AdapterInfo", "AdapterScan", "ChatEngine", "EngineError", "read_adapter", "scan_adapters"]
