"""The chat engine with the tiny model loaded, unloaded after each test."""

import pytest

from studio.chat import ChatEngine
from studio.config import ModelConfig, QuantizationConfig


@pytest.fixture
def engine(tiny_model_dir):
    engine = ChatEngine()
    engine.load(ModelConfig(name_or_path=str(tiny_model_dir)), QuantizationConfig(method="none"))
    yield engine
    engine.unload()
