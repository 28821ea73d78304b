"""From a DataConfig to train/validation examples: load, convert, split, tokenise."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from studio.config import DataConfig
from studio.data.formats import Conversations, Message, to_conversations
from studio.data.readers import read_records
from studio.data.registry import resolve_specs
from studio.data.tokenize import Encoded, encode_conversation
from studio.paths import resolve_dataset_dir


@dataclass
class Split:
    train: list[list[Message]]
    val: list[list[Message]]
    skipped: dict[str, int] = field(default_factory=dict)


@dataclass
class Tokenized:
    examples: list[Encoded]
    truncated: int = 0
    dropped: int = 0  # nothing left to learn after truncation


def load_conversations(config: DataConfig) -> list[Conversations]:
    """Every configured dataset read and converted; raises DataError before any run starts."""
    dataset_dir = resolve_dataset_dir(config.dataset_dir)
    loaded = []
    for spec in resolve_specs(dataset_dir, config.datasets):
        records = read_records(dataset_dir, spec)
        limit = min(n for n in (config.max_samples, spec.num_samples, len(records)) if n is not None)
        loaded.append(to_conversations(spec, records[:limit], config.system_prompt))
    return loaded


def split_conversations(loaded: list[Conversations], val_size: float, seed: int) -> Split:
    examples = [example for dataset in loaded for example in dataset.examples]
    random.Random(seed).shuffle(examples)
    n_val = round(len(examples) * val_size)
    if val_size > 0 and len(examples) >= 2:
        n_val = max(1, n_val)
    skipped: dict[str, int] = {}
    for dataset in loaded:
        for reason, count in dataset.skipped.items():
            skipped[f"{dataset.dataset}: {reason}"] = count
    return Split(train=examples[n_val:], val=examples[:n_val], skipped=skipped)


def tokenize_conversations(tokenizer, conversations: list[list[Message]], config: DataConfig) -> Tokenized:
    result = Tokenized(examples=[])
    for messages in conversations:
        encoded = encode_conversation(tokenizer, messages, config.cutoff_len, config.train_on_responses_only)
        if encoded is None:
            result.dropped += 1
            continue
        result.truncated += encoded.truncated
        result.examples.append(encoded)
    return result
