"""Batch decoding in which a finished row leaves the batch.

transformers' `generate` keeps computing every row of a batch until the longest is done; in an
evaluation, where a base model may ramble to max_new_tokens while its adapter answers in a line,
most of those steps are padding. Here each step runs only the live rows: a row that emits an end
token or reaches max_new_tokens is answered, and its KV-cache entries are dropped.

Token choice is generate's: the same logits processors (repetition penalty over the whole padded
row, then temperature, top-k, top-p) and, for greedy decoding, the same answers (tested).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
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
    copies: torch.Tensor | None = None,
) -> list[list[int]]:
    """The answer tokens of each row (end token excluded unless `keep_end`); `on_done(row, tokens)` as each row
    finishes. `generator`: the random source of sampling (else torch's global one). `copies`: several answers to
    one prompt, the prompt run once: the input rows are distinct prompts and answer row i answers input row
    copies[i] (then answers and `on_done` are by answer row; no `adapter_names`)."""
    if copies is not None and adapter_names is not None:
        raise ValueError("decode: copies of a prompt run under the prompt's adapter; adapter_names do not apply")
    copies = copies.to(input_ids.device) if copies is not None else None
    answers: list[list[int]] = [[] for _ in range(input_ids.shape[0] if copies is None else copies.shape[0])]
    rows = Rows(input_ids, attention_mask, torch.arange(input_ids.shape[0]), adapter_names)
    processors, sample = _processors(generation), generation.temperature > 0
    stop = torch.tensor(sorted(stop_ids), device=input_ids.device)
    positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 1)  # as generate places pads
    cache: Cache | None = None
    step_ids, step_positions = rows.ids, positions
    for step in range(generation.max_new_tokens):
        logits, cache = _forward(model, step_ids, rows, step_positions, cache)
        if step == 0 and copies is not None:
            logits, rows, step_positions = logits[copies], _copied(rows, copies), step_positions[copies]
            cache.batch_select_indices(copies)
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


def generated(
    model: torch.nn.Module,
    inputs: dict[str, torch.Tensor],
    stop_ids: set[int],
    max_new_tokens: int,
    pad_token_id: int | None,
    **sampling: object,
) -> list[list[int]]:
    """The answer tokens of each row (end token excluded) through the model's own generate, for rows `decode`
    cannot run (pictures need the model's 3-D positions). A row ends at any of `stop_ids`, the chat format's end
    tokens included, which the model's generation config may not name; generate pads it while the others go on."""
    ends = sorted(stop_ids)
    output = model.generate(  # type: ignore[operator]  # a transformers model's generate
        **inputs,
        **sampling,
        max_new_tokens=max_new_tokens,
        eos_token_id=ends,
        pad_token_id=pad_token_id if pad_token_id is not None else ends[0],
    )
    answers = output[:, inputs["input_ids"].shape[1] :].tolist()
    return [ids[: next((i for i, token in enumerate(ids) if token in stop_ids), len(ids))] for ids in answers]


def left_padded(prompts: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask) of prompts padded on the left, so that every row's answer starts in the same column."""
    width = max(len(prompt) for prompt in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        mask[row, width - len(prompt) :] = 1
    return ids, mask


def _copied(rows: Rows, copies: torch.Tensor) -> Rows:
    """The answer rows after the prompts' run: each a copy of its prompt's row."""
    return Rows(rows.ids[copies], rows.mask[copies], torch.arange(copies.shape[0]), None)


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


NARROW_ROWS = 32  # up to this many rows a step, the head reads its weight as the wide side of the product


@contextlib.contextmanager
def narrow_head(model: torch.nn.Module) -> Iterator[None]:
    """While decoding a few rows, the output layer computes (W @ h.T).T instead of h @ W.T: the same sums, but
    MKL then streams the vocabulary-sized weight once instead of repacking it for every call (measured on 2 CPU
    cores, SmolLM2-135M, 4 rows: the head 21 -> 11 ms, a whole decoding step -12%). Only a plain nn.Linear head
    is changed; callers enter this once around all the threads that decode (it sets an attribute)."""
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    if type(head) is not torch.nn.Linear:
        yield
        return
    linear: torch.nn.Linear = head

    def forward(hidden: torch.Tensor) -> torch.Tensor:
        rows = hidden.reshape(-1, hidden.shape[-1])
        if rows.shape[0] > NARROW_ROWS:
            return torch.nn.functional.linear(hidden, linear.weight, linear.bias)
        out = torch.mm(linear.weight, rows.t()).t()
        out = out + linear.bias if linear.bias is not None else out
        return out.reshape(*hidden.shape[:-1], out.shape[-1])

    linear.forward = forward  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        del linear.forward
