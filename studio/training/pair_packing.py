"""Preference pairs packed with one prompt for both answers: [prompt | chosen | rejected] per pair.

The rejected answer takes up the positions the chosen one has (its position ids restart where the
prompt ends) and attends to the prompt and to itself, never to the chosen answer (see
`varlen_attention`'s shared-prompt path); the prompt is run once instead of twice. The last
prompt position predicts the first token of both answers, so label rows are listed explicitly
(that row appears twice) instead of as one target per position.

Answers come back in the order chosen, rejected, pair by pair: `answer_lengths` says how many
label rows each has, which is what the trainer sums per answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from studio.data.tokenize_kinds import EncodedPair


@dataclass
class PackedPairs:
    input_ids: torch.Tensor  # (1, T)
    position_ids: torch.Tensor  # (1, T)
    cu_seqlens: torch.Tensor  # (n + 1,) int32: one segment per pair
    max_length: int
    shared_prompts: tuple[tuple[int, int, int], ...]  # per pair: (segment start, prompt length, chosen length)
    label_rows: torch.Tensor  # positions whose hidden state predicts an answer token, in answer order
    label_targets: torch.Tensor  # the token each of those rows predicts
    answer_lengths: list[int]  # label rows per answer: chosen, rejected, chosen, rejected, ...


def shareable(pair: EncodedPair) -> bool:
    """A prompt of at least one token: its last position predicts both answers' first tokens."""
    return len(pair.prompt) > 0


def pack_pairs(pairs: list[EncodedPair]) -> PackedPairs:
    ids, positions, rows, targets, lengths, shared, offsets = [], [], [], [], [], [], [0]
    for pair in pairs:
        start, p, c, r = offsets[-1], len(pair.prompt), len(pair.chosen), len(pair.rejected)
        ids += pair.prompt + pair.chosen + pair.rejected
        positions += list(range(p + c)) + list(range(p, p + r))
        # answer token k is predicted at the position before it: the prompt's last one for k = 0
        rows += [start + p - 1 + k for k in range(c)]
        rows += [start + p - 1] + [start + p + c + k - 1 for k in range(1, r)]
        targets += pair.chosen + pair.rejected
        lengths += [c, r]
        shared.append((start, p, c))
        offsets.append(start + p + c + r)
    return PackedPairs(
        input_ids=torch.tensor([ids]),
        position_ids=torch.tensor([positions]),
        cu_seqlens=torch.tensor(offsets, dtype=torch.int32),
        max_length=max(b - a for a, b in zip(offsets, offsets[1:])),
        shared_prompts=tuple(shared),
        label_rows=torch.tensor(rows),
        label_targets=torch.tensor(targets),
        answer_lengths=lengths,
    )
