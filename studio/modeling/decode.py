"""Batch decoding in which a finished row leaves the batch.

transformers' `generate` keeps computing every row of a batch until the longest is done; in an
evaluation, where a base model may ramble to max_new_tokens while its adapter answers in a line,
most of those steps are padding. Here each step runs only the live rows: a row that emits an end
token or reaches max_new_tokens is answered, and its KV-cache entries are dropped.

Token choice is generate's: the same logits processors (repetition penalty over the whole padded
row, then temperature, top-k, top-p) and, for greedy decoding, the same answers (tested).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from transformers import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from studio.config import GenerationConfig

if TYPE_CHECKING:
    from transformers import Cache


@dataclass
class Rows:
    """The live rows of a batch: ids so far (left-padded prompt + answer), mask, where each row sits in the output."""

    ids: torch.Tensor
    mask: torch.Tensor
    where: torch.Tensor  # index of each live row in the caller's order
    adapters: list[str] | None


def decode(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    generation: GenerationConfig,
    stop_ids: set[int],
    adapter_names: list[str] | None = None,
    on_done: Callable[[int, list[int]], None] = lambda row, tokens: None,
    *,
    keep_end: bool = False,
    generator: torch.Generator | None = None,
) -> list[list[int]]:
    """The answer tokens of each row (end token excluded unless `keep_end`); `on_done(row, tokens)` as each row
    finishes. `generator`: the random source of sampling (else torch's global one)."""
    answers: list[list[int]] = [[] for _ in range(input_ids.shape[0])]
    rows = Rows(input_ids, attention_mask, torch.arange(input_ids.shape[0]), adapter_names)
    processors, sample = _processors(generation), generation.temperature > 0
    stop = torch.tensor(sorted(stop_ids), device=input_ids.device)
    positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 1)  # as generate places pads
    cache: Cache | None = None
    step_ids, step_positions = rows.ids, positions
    for step in range(generation.max_new_tokens):
        logits, cache = _forward(model, step_ids, rows, step_positions, cache)
        # transformers types token ids as the legacy torch.LongTensor class, which no tensor is typed as
        scores = processors(rows.ids, logits.float())  # type: ignore[arg-type]
        chosen = (
            torch.multinomial(scores.softmax(-1), 1, generator=generator).squeeze(1) if sample else scores.argmax(-1)
        )
        ended = torch.isin(chosen, stop) | (step + 1 == generation.max_new_tokens)
        for index, token in zip(rows.where.tolist(), chosen.tolist()):
            if keep_end or token not in stop_ids:
                answers[index].append(token)
        for index in rows.where[ended].tolist():
            on_done(index, answers[index])
        live = (~ended).nonzero().squeeze(1)
        if live.numel() == 0:
            break
        rows, cache, step_positions = _keep(rows, chosen, live, cache, step_positions)
        step_ids = chosen[live].unsqueeze(1)
    return answers


def _forward(
    model: torch.nn.Module, step_ids: torch.Tensor, rows: Rows, positions: torch.Tensor, cache: Cache | None
) -> tuple[torch.Tensor, Cache]:
    kwargs = {"adapter_names": rows.adapters} if rows.adapters is not None else {}
    out = model(
        input_ids=step_ids,
        attention_mask=rows.mask,
        position_ids=positions[:, -step_ids.shape[1] :],
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,  # the prompt's own logits (a vocabulary row per prompt token) are never read
        **kwargs,
    )
    return out.logits[:, -1, :], out.past_key_values


def _keep(
    rows: Rows, chosen: torch.Tensor, live: torch.Tensor, cache: Cache, positions: torch.Tensor
) -> tuple[Rows, Cache, torch.Tensor]:
    """The live rows with their new token; the cache keeps only their entries."""
    ids = torch.cat([rows.ids, chosen.unsqueeze(1)], dim=1)[live]
    mask = torch.cat([rows.mask, torch.ones_like(rows.mask[:, :1])], dim=1)[live]
    if live.numel() < rows.ids.shape[0]:
        cache.batch_select_indices(live)
    adapters = [rows.adapters[i] for i in live.tolist()] if rows.adapters is not None else None
    next_positions = positions[live, -1:] + 1
    return Rows(ids, mask, rows.where[live], adapters), cache, next_positions


def _processors(generation: GenerationConfig) -> LogitsProcessorList:
    """generate's processors for these settings, in generate's order."""
    processors = LogitsProcessorList()
    if generation.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(generation.repetition_penalty))
    if generation.temperature > 0:
        if generation.temperature != 1.0:
            processors.append(TemperatureLogitsWarper(generation.temperature))
        if generation.top_k:
            processors.append(TopKLogitsWarper(generation.top_k))
        if generation.top_p < 1.0:
            processors.append(TopPLogitsWarper(generation.top_p))
    return processors
