"""chat.engine and vLLM's settings: one field each, in YAML and on the command line (the Chat tab's controls:
tests/app/test_chat_engine_choice.py), checked in one place."""

from __future__ import annotations

import pytest

from studio.cli import _build_parser
from studio.config import ChatConfig, ConfigError, RunConfig


def test_the_engine_is_hf_unless_asked_and_round_trips_through_yaml_and_the_command_line():
    assert RunConfig().chat == ChatConfig(engine="hf")
    config = RunConfig().with_overrides(
        {"chat.engine": "vllm", "chat.max_lora_rank": "128", "chat.max_model_len": "4096"}
    )
    assert (config.chat.engine, config.chat.max_lora_rank, config.chat.max_model_len) == ("vllm", 128, 4096)
    assert RunConfig.from_yaml_text(config.to_yaml()) == config
    command = config.to_command()
    assert "--chat.engine vllm" in command and "--chat.max_lora_rank 128" in command
    args = _build_parser().parse_args(["chat", "--chat.engine", "vllm", "--prompt", "hi"])
    assert vars(args)["set:chat.engine"] == "vllm"
    serve = _build_parser().parse_args(["serve", "--chat.engine", "vllm", "--chat.max_loras", "2"])
    assert vars(serve)["set:chat.max_loras"] == "2"


def test_a_setting_vllm_would_refuse_is_refused_here_naming_the_field():
    for field, value in (("engine", "sglang"), ("max_lora_rank", "1024"), ("gpu_memory_utilization", "1.5")):
        with pytest.raises(ConfigError, match=f"chat.{field}"):
            RunConfig().with_overrides({f"chat.{field}": value})
    with pytest.raises(ConfigError, match="chat.engine"):
        RunConfig.from_yaml_text("chat:\n  engine: vLLM\n")
