"""Attention over packed rows: causal attention inside each example, never across examples.

Registered with transformers' attention interface under `NAME` (see `register`). The
model's attention modules call it with the `cu_seq_lens_q` / `max_length_q` keyword arguments
the training loop passes to the decoder. On CUDA with half-precision inputs it is one varlen flash
attention call; elsewhere (CPU, fp32) it is one causal SDPA call per example, which costs
the sum of the examples' squared lengths rather than the square of the packed length.
Rows laid out with a shared prompt (`shared_prompts.py`: preference pairs, GRPO groups) pass
`shared_prompts`: in those segments every answer after the first attends to the prompt and itself only
(SDPA with a small mask), never to another answer. Masks are never built for this implementation
(transformers skips mask creation for attention functions it does not know), so right-padded batches
without `cu_seq_lens_q` are also correct: causal attention keeps real tokens from seeing the padding after them.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

NAME = "studio_varlen"
REPEATED_KV_NAME = "studio_varlen_repeat_kv"  # Levers.grouped_kv_attention off


def varlen_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    sliding_window: int | None = None,
    *,
    grouped_kv: bool = True,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """(1, heads, T, dim) packed query/key/value -> ((1, T, heads, dim), None). `grouped_kv=False`
    repeats key/value heads per query head before SDPA (set at registration, never by transformers)."""
    if kwargs.get("softcap") is not None:
        raise NotImplementedError(
            "Packed attention does not support attention logit soft-capping; set training.packing to false."
        )
    cu_seqlens = kwargs.get("cu_seq_lens_q")
    if query.shape[0] != 1 and cu_seqlens is not None:
        raise ValueError("Packed attention expects one packed row per forward pass.")
    dropout = dropout if module.training else 0.0
    if kwargs.get("shared_prompts") is not None:
        assert cu_seqlens is not None  # shared prompts come in packed rows (shared_prompts.py)
        return _shared_prompt_attention(
            query, key, value, cu_seqlens, kwargs["shared_prompts"], dropout, scaling, sliding_window, grouped_kv
        ), None
    if cu_seqlens is not None and _can_use_flash_varlen(query, cu_seqlens, dropout, sliding_window):
        return _flash_varlen(query, key, value, cu_seqlens, kwargs["max_length_q"], scaling, sliding_window), None
    if cu_seqlens is None:
        bounds = [(0, query.shape[2])]
    else:  # a host sync per layer on CUDA; only this fallback needs the bounds on the host
        bounds = list(zip(cu_seqlens[:-1].tolist(), cu_seqlens[1:].tolist()))
    outputs = [
        _causal_sdpa(
            query[:, :, start:end],
            key[:, :, start:end],
            value[:, :, start:end],
            dropout,
            scaling,
            sliding_window,
            grouped_kv,
        )
        for start, end in bounds
    ]
    if len(outputs) == 1:
        return outputs[0].transpose(1, 2).contiguous(), None
    return torch.cat([output.transpose(1, 2) for output in outputs], dim=1), None  # one copy, into (1, T, heads, dim)


def _shared_prompt_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    cu_seqlens: torch.Tensor,
    shared_prompts: tuple[tuple[int, int, tuple[int, ...]], ...],
    dropout: float,
    scaling: float | None,
    sliding_window: int | None,
    grouped_kv: bool,
) -> torch.Tensor:
    """Segments [prompt | first | second | ...]: prompt and first answer causal as one sequence; each later
    answer's queries see the prompt's keys and its own (causally), as if it followed the prompt directly."""
    bounds = list(zip(cu_seqlens[:-1].tolist(), cu_seqlens[1:].tolist()))
    trees = {start: (prompt, answers) for start, prompt, answers in shared_prompts}
    outputs = []
    for start, end in bounds:
        if start not in trees:
            q, k, v = (t[:, :, start:end] for t in (query, key, value))
            outputs.append(_causal_sdpa(q, k, v, dropout, scaling, sliding_window, grouped_kv))
            continue
        prompt, answers = trees[start]
        if sliding_window is not None and end - start > sliding_window:
            raise NotImplementedError(
                "Shared-prompt attention does not support sliding windows; set training.packing to false."
            )
        split = start + prompt + (answers[0] if answers else 0)
        q, k, v = (t[:, :, start:split] for t in (query, key, value))
        outputs.append(_causal_sdpa(q, k, v, dropout, scaling, None, grouped_kv))
        if split == end:
            continue
        keys, values = (torch.cat([t[:, :, start : start + prompt], t[:, :, split:end]], dim=2) for t in (key, value))
        mask = _later_answers_mask(prompt, answers[1:], query.device)
        outputs.append(_masked_sdpa(query[:, :, split:end], keys, values, mask, dropout, scaling, grouped_kv))
    return torch.cat([output.transpose(1, 2) for output in outputs], dim=1)


def _later_answers_mask(prompt: int, lengths: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """(answer tokens, prompt + answer tokens): every prompt key, then each answer's own keys causally."""
    total = sum(lengths)
    mask = torch.zeros((total, prompt + total), dtype=torch.bool, device=device)
    mask[:, :prompt] = True
    offset = 0
    for length in lengths:
        block = slice(offset, offset + length)
        mask[block, prompt + offset : prompt + offset + length] = torch.ones(
            (length, length), dtype=torch.bool, device=device
        ).tril()
        offset += length
    return mask


def _masked_sdpa(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor,
    dropout: float,
    scaling: float | None,
    grouped_kv: bool = True,
) -> torch.Tensor:
    if not grouped_kv and query.shape[1] != key.shape[1]:
        groups = query.shape[1] // key.shape[1]
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    gqa = query.shape[1] != key.shape[1]
    return F.scaled_dot_product_attention(
        query, key, value, attn_mask=mask, dropout_p=dropout, scale=scaling, enable_gqa=gqa
    )


def _causal_sdpa(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    dropout: float,
    scaling: float | None,
    sliding_window: int | None,
    grouped_kv: bool = True,
) -> torch.Tensor:
    if not grouped_kv and query.shape[1] != key.shape[1]:  # the copies grouped SDPA saves; for measuring it
        groups = query.shape[1] // key.shape[1]
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    # grouped-query attention without copies of the key/value heads (which autograd would keep)
    gqa = query.shape[1] != key.shape[1]
    length = query.shape[2]
    if sliding_window is not None and length > sliding_window:
        positions = torch.arange(length, device=query.device)
        distance = positions[:, None] - positions[None, :]
        mask = (distance >= 0) & (distance < sliding_window)
        return F.scaled_dot_product_attention(
            query, key, value, attn_mask=mask, dropout_p=dropout, scale=scaling, enable_gqa=gqa
        )
    return F.scaled_dot_product_attention(
        query, key, value, dropout_p=dropout, is_causal=length > 1, scale=scaling, enable_gqa=gqa
    )


def _can_use_flash_varlen(
    query: torch.Tensor, cu_seqlens: torch.Tensor | None, dropout: float, sliding_window: int | None
) -> bool:
    return (
        cu_seqlens is not None
        and query.is_cuda
        and query.dtype in (torch.float16, torch.bfloat16)
        and dropout == 0.0
        and _flash_varlen_function() is not None
        and (sliding_window is None or "window_size" in _varlen_parameters())
    )


def _flash_varlen(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_length: int,
    scaling: float | None,
    sliding_window: int | None,
) -> torch.Tensor:
    varlen_attn = _flash_varlen_function()
    assert varlen_attn is not None  # checked by _can_use_flash_varlen
    parameters = _varlen_parameters()
    # (1, heads, T, dim) -> (T, heads, dim), the layout varlen kernels take
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))
    options: dict[str, Any] = {"scale": scaling}
    if "window_size" in parameters:  # newer torch: a (left, right) window; (-1, 0) is causal
        options["window_size"] = (-1, 0) if sliding_window is None else (sliding_window - 1, 0)
    else:  # earlier releases: a causal flag (sliding windows were routed to SDPA)
        options["is_causal"] = True
    if q.shape[1] != k.shape[1]:
        if "enable_gqa" in parameters:
            options["enable_gqa"] = True
        else:
            groups = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    cu = cu_seqlens.to(torch.int32)
    length = int(max_length)
    output = varlen_attn(q, k, v, cu, cu, length, length, **options)
    return output.unsqueeze(0)  # (1, T, heads, dim), what the attention module expects back


def _find_varlen() -> tuple[Callable[..., Any] | None, frozenset[str]]:
    """torch's varlen flash attention and the names of its parameters, or (None, empty)."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:  # older torch
        return None, frozenset()
    parameters = frozenset(inspect.signature(varlen_attn).parameters)
    if not {"window_size", "is_causal"} & parameters:
        return None, frozenset()  # a signature this module does not know how to make causal
    return varlen_attn, parameters


# Looked up once at import, not per call: torch.compile traces the attention function, and a
# cached lookup or a signature inspection inside it would break the graph.
_VARLEN, _VARLEN_PARAMETERS = _find_varlen()


def _flash_varlen_function() -> Callable[..., Any] | None:
    return _VARLEN


def _varlen_parameters() -> frozenset[str]:
    return _VARLEN_PARAMETERS


def register(grouped_kv: bool = True) -> str:
    """Registers packed attention with transformers; returns the name a model's
    `set_attn_implementation` takes. `grouped_kv` is `Levers.grouped_kv_attention`."""
    from transformers import AttentionInterface

    if grouped_kv:
        AttentionInterface.register(NAME, varlen_attention_forward)
        return NAME
    AttentionInterface.register(REPEATED_KV_NAME, functools.partial(varlen_attention_forward, grouped_kv=False))
    return REPEATED_KV_NAME
