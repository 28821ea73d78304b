"""Helpers shared by tests."""

from __future__ import annotations

import time


def wait_for(predicate, timeout: float = 120.0, poll: float = 0.2, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_adapter(model_dir, target, seed: int = 0, scale: float = 0.5):
    """A LoRA adapter with non-zero weights set directly, so its answers must differ from the base."""
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM

    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")
    return _random_lora(lambda: AutoModelForCausalLM.from_pretrained(model_dir), config, target, seed, scale)


def make_vision_adapter(model_dir, target, seed: int = 0, scale: float = 0.5):
    """As make_adapter, on a vision-language model's language model: its greedy answers vary with the prompt and the
    picture (the bare tiny random model answers every prompt with the same newlines)."""
    from peft import LoraConfig
    from transformers import AutoModelForImageTextToText

    config = LoraConfig(r=4, target_modules=r".*language_model.*\.(q_proj|v_proj|down_proj)")
    return _random_lora(lambda: AutoModelForImageTextToText.from_pretrained(model_dir), config, target, seed, scale)


def _random_lora(load, config, target, seed: int, scale: float):
    import torch
    from peft import get_peft_model

    torch.manual_seed(seed)  # before the model loads, as the adapters the tests know were made
    model = get_peft_model(load(), config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:  # PEFT starts B at zero, which would make the adapter a no-op
                parameter.normal_(0, scale)
    model.save_pretrained(target)
    return target


def make_gguf(model_dir, path):
    """The tiny model written as an f16 GGUF file with its tokenizer and the studio's chat template."""
    from transformers import AutoModelForCausalLM

    from studio.config import ModelConfig
    from studio.export.gguf_types import GGUF_TYPES
    from studio.export.gguf_writer import write_gguf
    from studio.modeling.loader import load_tokenizer

    tokenizer = load_tokenizer(ModelConfig(name_or_path=str(model_dir)), str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    return write_gguf(path, model, tokenizer, GGUF_TYPES["f16"], name="tiny", pre="qwen2")


def quick_run(model_dir) -> dict[str, str]:
    """Overrides for a short CPU run of a tiny model (plain LoRA, every step logged, few evaluation samples), for
    tests that need finished runs to look at; callers add the steps and evaluations they need."""
    return {
        "model.name_or_path": str(model_dir),
        "quantization.method": "none",
        "data.max_samples": "40",
        "training.logging_steps": "1",
        "training.save_steps": "1000",
        "training.learning_rate": "5e-3",
        "training.gradient_checkpointing": "false",
        "evaluation.max_samples": "2",
        "generation.max_new_tokens": "4",
        "generation.temperature": "0",
    }


def trainable_model(model_dir, training, quantization=None, **options):
    """The trainable model and its compute plan on the CPU, built as the worker builds them, seeded."""
    import torch

    from studio.config import LoraConfig, ModelConfig, QuantizationConfig
    from studio.modeling.compute import resolve_plan
    from studio.training.trainable import load_trainable_model

    quantization = quantization or QuantizationConfig(method="none")
    plan = resolve_plan(quantization, training, cuda=False)
    path = str(model_dir)
    torch.manual_seed(0)
    model = load_trainable_model(
        model=ModelConfig(name_or_path=path),
        quantization=quantization,
        training=training,
        lora=LoraConfig(),
        model_path=path,
        plan=plan,
        **options,
    )
    return model, plan


def demo_conversations(tokenizer, count: int) -> list:
    """The first `count` conversations of the demo set, tokenised as training reads them."""
    from studio.config import DataConfig
    from studio.data.prepare import load_conversations, tokenize_conversations

    data = DataConfig(datasets=["alpaca_zh_demo"], max_samples=count)
    conversations = [c for loaded in load_conversations(data) for c in loaded.examples]
    return tokenize_conversations(tokenizer, conversations, data).examples


def run_worker(folder_path, model_dir, expect_exit: int = 0, env: dict[str, str] | None = None, **overrides: str):
    """A short plain-LoRA run of the tiny model through the real worker process, in `folder_path`; (folder, events).
    `overrides` are dotted config fields over the defaults (4 steps, every step logged, evaluated every 2); `env`
    adds to the worker's environment."""
    import os
    import subprocess
    import sys

    from studio.config import RunConfig
    from studio.runs.folder import RunFolder

    folder = RunFolder(folder_path)
    folder.path.mkdir(parents=True)
    config = RunConfig().with_overrides(
        {
            "model.name_or_path": str(model_dir),
            "quantization.method": "none",
            "data.max_samples": "24",
            "training.learning_rate": "1e-2",
            "training.max_steps": "4",
            "training.logging_steps": "1",
            "training.eval_steps": "2",
            "training.save_steps": "1000",
            **overrides,
        }
    )
    config.save(folder.config_file)
    result = subprocess.run(
        [sys.executable, "-m", "studio.worker", str(folder.path)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == expect_exit, result.stdout + result.stderr
    events, _ = folder.read_events()
    return folder, events


# A chat template that refuses a system turn, as Gemma's does (its raise_exception), and otherwise writes ChatML
SYSTEMLESS_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
