"""The training split's tokens, counted as the worker counts them: read, split, tokenised for the stage.

What an estimate needs from the data: how many tokens one epoch trains on (the duration), and how long its
examples are (the activations of a micro-batch). A large dataset is tokenised from a sample of its training
split and the count scaled up. Nothing is downloaded: datasets from a hub and models not on this machine give
no count (the caller says why), and the tokenizer comes from the model's local folder.
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from studio.config import RunConfig
from studio.errors import StudioError
from studio.memory_estimate import DataLengths, local_config_dir

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

SAMPLE_LIMIT = 2000  # examples tokenised at most; the count of a larger split is scaled from them
# ppo and grpo train on prompts with sampled answers: a sampled answer is counted at its longest
RL_STAGES = ("ppo", "grpo")


class NoDataCount(StudioError):
    """The training split's tokens cannot be counted without downloading or loading something first."""


@dataclass(frozen=True)
class DataTokens:
    train_examples: int
    val_examples: int
    train_tokens: int  # one pass over the training split, as the trainer counts tokens (tokens/s)
    val_tokens: int
    mean: float  # per training example, as packed (a pair: both answers with the prompt twice)
    longest: int
    spread: float  # standard deviation of the examples' lengths
    sampled: int  # training examples tokenised; below train_examples the counts are scaled from them

    @property
    def lengths(self) -> DataLengths:
        return DataLengths(mean=self.mean, longest=self.longest, spread=self.spread)


def data_tokens(config: RunConfig) -> DataTokens:
    """The counts for `config`'s data, model, stage and split; NoDataCount when something would be downloaded."""
    folder = local_config_dir(config.model)
    if folder is None:
        raise NoDataCount("estimate.model_not_local", name=config.model.name_or_path)
    stamp = _local_files_stamp(config)
    return _counted(
        config.data.model_dump_json(),
        config.model.model_dump_json(),
        str(folder),
        config.training.stage,
        config.training.seed,
        config.generation.max_new_tokens,
        stamp,
    )


def _local_files_stamp(config: RunConfig) -> tuple[float, ...]:
    """Modification times of the registry and the datasets' files (a changed file is counted again); NoDataCount
    for a dataset that would come from a hub."""
    from studio.data.registry import REGISTRY_FILE, resolve_specs
    from studio.paths import resolve_dataset_dir

    folder = resolve_dataset_dir(config.data.dataset_dir)
    paths = [folder / REGISTRY_FILE]
    for spec in resolve_specs(folder, config.data.datasets):
        if not spec.file_name:
            raise NoDataCount("estimate.hub_dataset", name=spec.name)
        paths.append(folder / spec.file_name)
    return tuple(path.stat().st_mtime if path.exists() else 0.0 for path in paths)


@functools.lru_cache(maxsize=16)
def _counted(
    data_json: str, model_json: str, folder: str, stage: str, seed: int, max_new_tokens: int, stamp: tuple
) -> DataTokens:
    """Cached by everything the counts depend on (the page asks again at every change of a field)."""
    from studio.config import DataConfig, ModelConfig
    from studio.data.picture_tokens import PictureEncoder
    from studio.data.prepare import load_stage_examples, split_conversations, tokenize_for_stage

    data, model = DataConfig.model_validate_json(data_json), ModelConfig.model_validate_json(model_json)
    tokenizer = _tokenizer(model, folder)
    pictures = PictureEncoder.for_model(tokenizer, model)  # a picture counts as its image tokens
    split = split_conversations(load_stage_examples(data, stage, model.hub), data.val_size, seed)
    train_sample, val_sample = split.train[:SAMPLE_LIMIT], split.val[:SAMPLE_LIMIT]
    train = _counts(tokenize_for_stage(tokenizer, train_sample, data, stage, pictures).examples, max_new_tokens)
    val = _counts(tokenize_for_stage(tokenizer, val_sample, data, stage, pictures).examples, max_new_tokens)
    if not train:
        raise NoDataCount("estimate.no_training_examples")
    scale = len(split.train) / len(train_sample)  # examples dropped by tokenising are dropped at the same rate
    val_scale = len(split.val) / len(val_sample) if val_sample else 0.0
    return DataTokens(
        train_examples=round(len(train) * scale),
        val_examples=round(len(val) * val_scale),
        train_tokens=round(sum(train) * scale),
        val_tokens=round(sum(val) * val_scale),
        mean=statistics.fmean(train),
        longest=max(train),
        spread=statistics.pstdev(train),
        sampled=len(train_sample),
    )


def _tokenizer(model: Any, folder: str) -> PreTrainedTokenizerBase:
    from studio.modeling.loader import load_tokenizer

    return load_tokenizer(model, folder)


def _counts(examples: Sequence[Any], max_new_tokens: int) -> list[int]:
    return [_trained_tokens(example, max_new_tokens) for example in examples]


def lengths_of(examples: Sequence[Any], max_new_tokens: int) -> DataLengths:
    """The lengths of tokenised training examples (what the worker holds), as the estimate takes them."""
    counts = _counts(examples, max_new_tokens) or [0]
    return DataLengths(mean=statistics.fmean(counts), longest=max(counts), spread=statistics.pstdev(counts))


def _trained_tokens(example: Any, max_new_tokens: int) -> int:
    """What the stage's objective counts for one example (studio.training.objectives `tokens`)."""
    if hasattr(example, "chosen"):  # dpo and rm: prompt + chosen and prompt + rejected
        return 2 * len(example.prompt) + len(example.chosen) + len(example.rejected)
    if hasattr(example, "rollouts"):  # ppo and grpo: the prompt and an answer as long as it may grow
        return len(example.prompt) + max_new_tokens
    return len(example.input_ids)  # sft, kto (the answer's document), pt (a row of documents)
