"""A model that ends every answer at once with its chat format's end token while its generation config names
another end token: for the tests that generation stops at the chat format's end, not at max_new_tokens."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def ends_at_once(model: Any, end_token: int, other_end: int) -> Iterator[list[int]]:
    """While inside, `model` (a transformers model, or peft's around one) answers `end_token` first at every step,
    and its generation config names `other_end` alone; yields the list that grows by one at each decoding step
    (each call of the output layer)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    steps: list[int] = []

    def end_now(module: Any, args: Any, logits: Any) -> Any:
        steps.append(1)
        logits = logits.clone()
        logits[..., end_token] = logits.abs().max() * 10 + 100
        return logits

    configured = base.generation_config.eos_token_id
    base.generation_config.eos_token_id = other_end
    hook = base.get_output_embeddings().register_forward_hook(end_now)
    try:
        yield steps
    finally:
        hook.remove()
        base.generation_config.eos_token_id = configured
