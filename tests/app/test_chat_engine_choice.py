"""The Chat tab's engine choice (chat.engine): a control of the form, vLLM's settings shown beside it for vllm, and
the choice handed to the load; where vLLM cannot run, the Load button says why and what runs here."""

from __future__ import annotations

import gradio as gr
import pytest
import torch

from app import chat_tab
from app.server import build_page
from studio.api import Studio
from studio.config import RunConfig


def test_the_engine_is_a_form_control_and_vllms_settings_show_for_vllm(tmp_path):
    plain = build_page(Studio(tmp_path / "a"), RunConfig())
    engine = plain.chat.engine
    assert isinstance(engine, gr.Dropdown) and engine.elem_id == "qs-field-chat-engine"
    assert [choice[0] for choice in engine.choices] == ["hf", "vllm"] and engine.value == "hf"
    assert plain.chat.vllm_settings.visible is False
    assert {f"chat.{name}" for name in chat_tab.VLLM_FIELDS} <= set(plain.page.form.controls)
    chosen = build_page(Studio(tmp_path / "b"), RunConfig().with_overrides({"chat.engine": "vllm"}))  # --config
    assert chosen.chat.engine.value == "vllm" and chosen.chat.vllm_settings.visible is True


@pytest.mark.skipif(torch.cuda.is_available(), reason="vLLM is refused here for want of a CUDA GPU")
def test_loading_with_vllm_here_says_why_not_and_what_runs_here(tmp_path, tiny_model_dir):
    built = build_page(Studio(tmp_path / "runs"), RunConfig())
    form = built.page.form
    config = RunConfig().with_overrides(
        {"model.name_or_path": str(tiny_model_dir), "quantization.method": "none", "chat.engine": "vllm"}
    )
    said = chat_tab._load_model(built.page, form.values_of(config))("en")
    assert "vLLM needs a CUDA GPU; chat.engine: hf runs here" in said
    assert not built.page.studio.engine.loaded  # nothing was loaded, nor half loaded
    hf = config.model_copy(update={"chat": config.chat.model_copy(update={"engine": "hf"})})
    assert "Loaded" in chat_tab._load_model(built.page, form.values_of(hf))("en")
    built.page.studio.unload_model()
