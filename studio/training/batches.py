"""Which examples make up each optimizer step, and how they are padded into tensors.

The order is a pure function of (seed, epoch), so a resumed run at step N sees exactly
the batches the interrupted run would have seen.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from studio.data.tokenize import IGNORE_INDEX, Labelled

if TYPE_CHECKING:
    from studio.config import TrainingConfig


@dataclass(frozen=True)
class StepSchedule:
    num_examples: int
    batch_size: int
    accumulation: int
    num_epochs: float
    max_steps: int | None
    seed: int
    # PPO: each buffer of `buffer` steps' examples is answered once and trained on `repeat` times over
    repeat: int = 1
    buffer: int = 1

    @classmethod
    def of(cls, num_examples: int, training: TrainingConfig, repeat: int = 1, buffer: int = 1) -> StepSchedule:
        """The schedule a TrainingConfig gives `num_examples` training examples."""
        return cls(
            num_examples=num_examples,
            batch_size=training.batch_size,
            accumulation=training.gradient_accumulation_steps,
            num_epochs=training.num_epochs,
            max_steps=training.max_steps,
            seed=training.seed,
            repeat=repeat,
            buffer=buffer,
        )

    @property
    def micro_batches_per_epoch(self) -> int:
        return math.ceil(self.num_examples / self.batch_size)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.micro_batches_per_epoch / self.accumulation)

    @property
    def total_steps(self) -> int:
        if self.max_steps is not None:
            return self.max_steps
        return max(1, math.ceil(self.num_epochs * self.steps_per_epoch)) * self.repeat

    @property
    def _source_steps(self) -> int:
        """Steps of distinct examples (each trained `repeat` times)."""
        return max(1, math.ceil(self.total_steps / self.repeat))

    def epoch_at(self, step: int) -> float:
        """Fractional epoch (passes over the data, a PPO buffer's repeats counted once) after `step` steps."""
        return step / (self.steps_per_epoch * self.repeat)

    def block_of(self, step: int) -> int:
        """The buffer a step trains on (PPO: answered once, trained on `repeat` times)."""
        return step // (self.buffer * self.repeat)

    def block_steps(self, block: int) -> list[int]:
        """The source steps whose examples make up a buffer."""
        return list(
            range(block * self.buffer, min((block + 1) * self.buffer, max(self._source_steps, block * self.buffer + 1)))
        )

    def micro_batches(self, step: int) -> list[list[int]]:
        """Example indices of each micro-batch of 0-based optimizer step `step`."""
        if self.repeat == 1 and self.buffer == 1:
            return self.source_batches(step)
        block, within = divmod(step, self.buffer * self.repeat)
        sources = self.block_steps(block)
        return self.source_batches(sources[within % len(sources)])

    def source_batches(self, step: int) -> list[list[int]]:
        """Example indices of each micro-batch of source step `step` (the step itself, without PPO's repeats)."""
        epoch, within = divmod(step, self.steps_per_epoch)
        order = list(range(self.num_examples))
        random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        first = within * self.accumulation
        last = min(first + self.accumulation, self.micro_batches_per_epoch)
        return [order[i * self.batch_size : (i + 1) * self.batch_size] for i in range(first, last)]


def collate(examples: Sequence[Labelled], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad to the longest example; padded positions are masked out of attention and loss."""
    width = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        length = len(example.input_ids)
        input_ids[row, :length] = torch.tensor(example.input_ids)
        labels[row, :length] = torch.tensor(example.labels)
        attention_mask[row, :length] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def predicted_tokens(examples: Sequence[Labelled]) -> int:
    """Tokens that contribute to the loss (labels are shifted by one, so the first never does)."""
    return sum(sum(1 for label in e.labels[1:] if label != IGNORE_INDEX) for e in examples)
