"""Predictions for Evaluate: every sample answered by every column (the base, an adapter), in few, full batches.

- samples of similar prompt length share a batch, so little of it is padding;
- base and adapter rows of a sample sit in the same batch (mixed-adapter rows), so a step reads the
  weights once for both;
- a batch holds as many samples as `evaluation.batch_size` allows and the KV-cache budget holds
  (a decode step reads the weights once whatever the number of rows: wide batches are nearly free);
- a row that has answered leaves its batch (studio.modeling.decode).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from studio.config import GenerationConfig

if TYPE_CHECKING:
    from studio.chat.engine import ChatEngine

CPU_CACHE_BUDGET_BYTES = 2**30  # KV cache of one batch on a CPU; on a GPU a quarter of its free memory


def predict(
    engine: ChatEngine,
    prompts: list[list[dict]],
    columns: list[str | None],
    generation: GenerationConfig,
    batch_size: int,
    progress: Callable[[int, int], None],
) -> dict[str | None, list[str]]:
    """{column: answers in prompt order}; `progress(rows_done, rows_total)` as rows finish."""
    lengths = [_prompt_tokens(engine, prompt, generation) for prompt in prompts]
    answers: dict[str | None, list[str]] = {column: [""] * len(prompts) for column in columns}
    total, done = len(prompts) * len(columns), [0]
    progress(0, total)
    for batch in _batches(lengths, len(columns), batch_size, generation.max_new_tokens, _budget_rows(engine)):
        rows = [(index, column) for index in batch for column in columns]

        def finished(row: int, text: str, rows: list[tuple[int, str | None]] = rows) -> None:
            index, column = rows[row]
            answers[column][index] = text
            done[0] += 1
            progress(done[0], total)

        engine.answers([prompts[i] for i, _ in rows], [c for _, c in rows], generation, on_done=finished)
    return answers


def _prompt_tokens(engine: ChatEngine, prompt: list[dict], generation: GenerationConfig) -> int:
    messages = (
        prompt if not generation.system_prompt else [{"role": "system", "content": generation.system_prompt}, *prompt]
    )
    text = engine.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return len(engine.tokenizer(text, add_special_tokens=False)["input_ids"])


def _budget_rows(engine: ChatEngine) -> Callable[[int], int]:
    """How many rows of `width` tokens (prompt + answer) the KV-cache budget holds."""
    assert engine.plan is not None  # predict() runs on a loaded model
    if engine.plan.device == "cuda":
        free, _ = torch.cuda.mem_get_info()
        budget = free // 4
    else:
        budget = CPU_CACHE_BUDGET_BYTES
    per_token = engine.kv_bytes_per_token()
    return lambda width: max(1, budget // (per_token * width))


def _batches(
    lengths: list[int], columns: int, batch_size: int, max_new: int, rows_for: Callable[[int], int]
) -> list[list[int]]:
    """Sample indices in batches of similar prompt length, longest first (so the first batch's pace is a safe ETA)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        width = lengths[current[0] if current else index] + max_new  # the batch's longest prompt sets its width
        fits = len(current) < batch_size and (len(current) + 1) * columns <= rows_for(width)
        if current and not fits:
            batches.append(current)
            current = []
        current.append(index)
    return batches + ([current] if current else [])
