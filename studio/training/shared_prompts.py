"""Answers packed with their prompt once: [prompt | answer 1 | answer 2 | ...] per segment.

A preference pair is a prompt with two answers (chosen, rejected); a GRPO group is a prompt with the answers
sampled for it. Every answer after the first takes up the positions the first one has (its position ids
restart where the prompt ends) and attends to the prompt and to itself, never to another answer (see
`varlen_attention`'s shared-prompt path), so the prompt runs once instead of once per answer. The last prompt
position predicts the first token of every answer, so label rows are listed explicitly (that row appears once
per answer) instead of as one target per position.

Answers come back in segment order, answer by answer: `answer_lengths` says how many label rows each has.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from studio.data.tokenize_kinds import EncodedPair

# per segment: (start in the packed row, prompt length, each answer's length)
Layout = tuple[int, int, tuple[int, ...]]


@dataclass
class SharedPacking:
    input_ids: torch.Tensor  # (1, T)
    position_ids: torch.Tensor  # (1, T)
    cu_seqlens: torch.Tensor  # (n + 1,) int32: one segment per prompt
    max_length: int
    shared_prompts: tuple[Layout, ...]
    label_rows: torch.Tensor  # positions whose hidden state predicts an answer token, in answer order
    label_targets: torch.Tensor  # the token each of those rows predicts
    answer_lengths: list[int]  # label rows per answer, segment by segment


def shareable(pair: EncodedPair) -> bool:
    """A prompt of at least one token (its last position predicts both answers' first tokens) that shows no picture:
    pictures go through the vision-language model's own forward pass, prompt and answer as one document."""
    return len(pair.prompt) > 0 and not pair.images


def pack_pairs(pairs: list[EncodedPair]) -> SharedPacking:
    """Pairs as segments [prompt | chosen | rejected]: answers come back chosen, rejected, pair by pair."""
    return pack_shared([(pair.prompt, [pair.chosen, pair.rejected]) for pair in pairs])


def pack_shared(segments: Sequence[tuple[list[int], Sequence[list[int]]]]) -> SharedPacking:
    """(prompt, answers) segments, each prompt at least one token long."""
    ids: list[int] = []
    positions: list[int] = []
    rows: list[int] = []
    targets: list[int] = []
    lengths: list[int] = []
    shared: list[Layout] = []
    offsets = [0]
    for prompt, answers in segments:
        start, p = offsets[-1], len(prompt)
        ids += prompt
        positions += range(p)
        end = start + p
        for answer in answers:
            ids += answer
            positions += range(p, p + len(answer))
            # answer token k is predicted at the position before it: the prompt's last one for k = 0
            rows += [start + p - 1] + [end + k - 1 for k in range(1, len(answer))] if answer else []
            targets += answer
            lengths.append(len(answer))
            end += len(answer)
        shared.append((start, p, tuple(len(answer) for answer in answers)))
        offsets.append(end)
    return SharedPacking(
        input_ids=torch.tensor([ids]),
        position_ids=torch.tensor([positions]),
        cu_seqlens=torch.tensor(offsets, dtype=torch.int32),
        max_length=max(b - a for a, b in zip(offsets, offsets[1:])),
        shared_prompts=tuple(shared),
        label_rows=torch.tensor(rows),
        label_targets=torch.tensor(targets),
        answer_lengths=lengths,
    )
