"""Padding-free micro-batches: the examples of an optimizer step laid end to end.

A packed micro-batch is one row of concatenated examples. Position ids restart at 0 for
each example and `cu_seqlens` marks where each one begins, so attention (see
`varlen_attention`) never crosses from one example into another. Targets are shifted
inside each example, so the last token of one example never predicts the first of the next.
Which examples make up the optimizer step does not change, only how they are laid out, so
the gradient of a step is the same as with padded micro-batches.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

from studio.data.tokenize import IGNORE_INDEX, Labelled

Item = TypeVar("Item")
Example = TypeVar("Example", bound=Labelled)


@dataclass
class Packed:
    input_ids: torch.Tensor  # (1, T)
    position_ids: torch.Tensor  # (1, T)
    targets: torch.Tensor  # (T,): the token predicted at each position, IGNORE_INDEX where none is
    cu_seqlens: torch.Tensor  # (n + 1,) int32 offsets of the examples
    max_length: int

    def to(self, device: str) -> Packed:
        moved = {
            name: getattr(self, name).to(device, non_blocking=True) for name in ("input_ids", "position_ids", "targets")
        }
        return Packed(**moved, cu_seqlens=self.cu_seqlens.to(device), max_length=self.max_length)


def shifted_targets(example: Labelled) -> list[int]:
    """Labels moved one to the left: position t is trained to predict token t + 1."""
    return example.labels[1:] + [IGNORE_INDEX]


def pack(examples: Sequence[Labelled]) -> Packed:
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


def split_by_tokens(examples: list[Example], budget: int, multiple: int = 1) -> list[list[Example]]:
    """Consecutive groups of about `budget` tokens or fewer and about equal size, their number
    a multiple of `multiple`. A group can run over the budget by part of one example; a long
    example goes alone."""
    total = sum(len(example.input_ids) for example in examples)
    count = math.ceil(math.ceil(total / budget) / multiple) * multiple
    return split_evenly(examples, count)


def split_evenly(examples: list[Example], count: int) -> list[list[Example]]:
    """`count` consecutive groups (fewer if there are fewer examples) of about equal tokens."""
    lengths = [len(example.input_ids) for example in examples]
    total = sum(lengths)
    count = max(1, min(len(examples), count))
    cumulative = list(itertools.accumulate(lengths))
    bounds = [0]
    for k in range(1, count):
        share = total * k / count
        # the cut nearest the k-th equal share, leaving at least one example for each later group;
        # found by bisection, so an evaluation split of thousands of examples is cut at once
        low, high = bounds[-1] + 1, len(examples) - (count - k)
        above = bisect.bisect_left(cumulative, share)  # first cut whose tokens reach the share
        candidates = sorted({min(high, max(low, cut)) for cut in (above, above + 1)})
        bounds.append(min(candidates, key=lambda i: abs(cumulative[i - 1] - share)))
    bounds.append(len(examples))
    return [examples[a:b] for a, b in zip(bounds, bounds[1:])]


def plan_lanes(examples: list[Example], budget: int, lanes: int, balanced: bool = True) -> list[list[list[Example]]]:
    """For each lane, the packed micro-batches it trains one after the other.

    The step's examples are first dealt into `lanes` shares of about equal work, then each share
    is cut into the same number of micro-batches of about `budget` tokens. Cutting the step into
    consecutive groups and handing them to whichever lane is free left one lane idle for up to a
    fifth of a step on 2 cores: groups differ by up to an example's length, and those
    differences pile up on one lane (docs/benchmarks.md). `balanced=False` plans that way
    (`Levers.balanced_lanes`): each group a plan of its own, taken by whichever lane is free.
    """
    if not examples:
        return []
    if lanes == 1:
        return [split_by_tokens(examples, budget)]
    if not balanced:
        return [[group] for group in split_by_tokens(examples, budget, lanes)]
    shares = deal(examples, lanes, example_work)
    total = sum(len(example.input_ids) for example in examples)
    per_lane = math.ceil(total / budget / len(shares))
    plans = [sorted(split_evenly(share, per_lane), key=_tokens) for share in shares]
    # lanes start together: with every other lane taking its largest micro-batch first, large
    # ones run beside small ones and the activations held at once stay near the average
    return [plan[::-1] if lane % 2 else plan for lane, plan in enumerate(plans)]


def _tokens(group: list[Example]) -> int:
    return sum(len(example.input_ids) for example in group)


def example_work(example: Labelled) -> float:
    """Relative cost of training on one example: linear layers grow with its length, attention
    with its square (about 1/2048 of the linear cost per token of context on a small model)."""
    length = len(example.input_ids)
    return length * (1 + length / 2048)


def deal(items: list[Item], lanes: int, work: Callable[[Item], float]) -> list[list[Item]]:
    """`items` dealt into at most `lanes` shares of about equal total work, largest first to the
    least loaded share; each share keeps the items' original order. Deterministic."""
    loads = [0.0] * lanes
    shares: list[list[int]] = [[] for _ in range(lanes)]
    for index in sorted(range(len(items)), key=lambda i: -work(items[i])):
        lane = min(range(lanes), key=loads.__getitem__)
        shares[lane].append(index)
        loads[lane] += work(items[index])
    return [[items[i] for i in sorted(share)] for share in shares if share]


def padded_groups(examples: list[Example], batch_size: int, by_length: bool = True) -> list[list[Example]]:
    """Padded micro-batches of similar lengths, so little of each is padding; consecutive
    examples in their given order with `by_length=False` (`Levers.length_grouping`)."""
    ordered = sorted(examples, key=lambda e: len(e.input_ids)) if by_length else examples
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
