"""Padding-free micro-batches: the examples of an optimizer step laid end to end.

A packed micro-batch is one row of concatenated examples. Position ids restart at 0 for
each example and `cu_seqlens` marks where each one begins, so attention (see
`varlen_attention`) never crosses from one example into another. Targets are shifted
inside each example, so the last token of one example never predicts the first of the next.
Which examples make up the optimizer step does not change, only how they are laid out, so
the gradient of a step is the same as with padded micro-batches.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch

from studio.data.tokenize import IGNORE_INDEX, Encoded


@dataclass
class Packed:
    input_ids: torch.Tensor  # (1, T)
    position_ids: torch.Tensor  # (1, T)
    targets: torch.Tensor  # (T,): the token predicted at each position, IGNORE_INDEX where none is
    cu_seqlens: torch.Tensor  # (n + 1,) int32 offsets of the examples
    max_length: int

    def to(self, device: str) -> "Packed":
        moved = {name: getattr(self, name).to(device, non_blocking=True) for name in ("input_ids", "position_ids", "targets")}
        return Packed(**moved, cu_seqlens=self.cu_seqlens.to(device), max_length=self.max_length)


def shifted_targets(example: Encoded) -> list[int]:
    """Labels moved one to the left: position t is trained to predict token t + 1."""
    return example.labels[1:] + [IGNORE_INDEX]


def pack(examples: list[Encoded]) -> Packed:
    lengths = [len(e.input_ids) for e in examples]
    input_ids = [token for e in examples for token in e.input_ids]
    positions = [p for length in lengths for p in range(length)]
    targets = [t for e in examples for t in shifted_targets(e)]
    offsets = [0]
    for length in lengths:
        offsets.append(offsets[-1] + length)
    return Packed(
        input_ids=torch.tensor([input_ids]),
        position_ids=torch.tensor([positions]),
        targets=torch.tensor(targets),
        cu_seqlens=torch.tensor(offsets, dtype=torch.int32),
        max_length=max(lengths),
    )


def split_by_tokens(examples: list[Encoded], budget: int, multiple: int = 1) -> list[list[Encoded]]:
    """Consecutive groups of about `budget` tokens or fewer and about equal size, their number
    a multiple of `multiple` (one group per CPU lane at a time, so no lane idles at the end of
    a step). A group can run over the budget by part of one example; a long example goes alone."""
    lengths = [len(example.input_ids) for example in examples]
    total = sum(lengths)
    count = min(len(examples), math.ceil(math.ceil(total / budget) / multiple) * multiple)
    cumulative = list(itertools.accumulate(lengths))
    bounds = [0]
    for k in range(1, count):
        share = total * k / count
        # the cut nearest the k-th equal share, leaving at least one example for each later group
        candidates = range(bounds[-1] + 1, len(examples) - (count - k) + 1)
        bounds.append(min(candidates, key=lambda i: abs(cumulative[i - 1] - share)))
    bounds.append(len(examples))
    return [examples[a:b] for a, b in zip(bounds, bounds[1:])]


def group_by_length(examples: list[Encoded], batch_size: int) -> list[list[Encoded]]:
    """Padded micro-batches of similar lengths, so little of each is padding."""
    ordered = sorted(examples, key=lambda e: len(e.input_ids))
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
