"""A tiny random Qwen2 model with a real byte-level BPE tokenizer, built offline in seconds.

Tests, benchmarks and smoke runs train it for real; it learns the demo data quickly
because its tokenizer is trained on that data.
"""

from __future__ import annotations

import json
from pathlib import Path

from studio.modeling.chat_templates import TEMPLATES
from studio.paths import BUNDLED_DATA_DIR

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _corpus(data_dir: Path):
    for path in sorted(data_dir.glob("*.json*")):
        if path.name == "dataset_info.json":
            continue
        yield path.read_text(encoding="utf-8")


def build_tokenizer(vocab_size: int = 2000, data_dir: Path = BUNDLED_DATA_DIR):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    core.train_from_iterator(_corpus(data_dir), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token=None
    )
    tokenizer.chat_template = TEMPLATES["chatml"]
    return tokenizer


def build_tiny_model(target: str | Path, hidden: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """Save a tiny Qwen2 causal LM and its tokenizer to `target`; returns the folder."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    target = Path(target)
    tokenizer = build_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    Qwen2ForCausalLM(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    (target / "studio_tiny.json").write_text(json.dumps({"hidden": hidden, "layers": layers, "seed": seed}))
    return target
