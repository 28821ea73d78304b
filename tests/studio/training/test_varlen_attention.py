"""Packed attention equals plain causal attention computed example by example."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from studio.training.varlen_attention import varlen_attention_forward


class _Module(torch.nn.Module):
    pass


def _reference(query, key, value, start, end, window=None):
    """Dense masked attention over one example, grouped-query heads expanded."""
    groups = query.shape[1] // key.shape[1]
    q = query[:, :, start:end]
    k = key[:, :, start:end].repeat_interleave(groups, dim=1)
    v = value[:, :, start:end].repeat_interleave(groups, dim=1)
    positions = torch.arange(end - start)
    distance = positions[:, None] - positions[None, :]
    mask = distance >= 0
    if window is not None:
        mask &= distance < window
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2)


def _inputs(lengths, heads=4, kv_heads=2, dim=8):
    torch.manual_seed(0)
    total = sum(lengths)
    query = torch.randn(1, heads, total, dim)
    key, value = torch.randn(1, kv_heads, total, dim), torch.randn(1, kv_heads, total, dim)
    offsets = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    return query, key, value, offsets


def test_grouped_query_attention_stays_inside_each_example():
    lengths = [5, 1, 9, 3]
    query, key, value, offsets = _inputs(lengths)
    module = _Module().eval()
    output, _ = varlen_attention_forward(
        module, query, key, value, None, cu_seq_lens_q=offsets, max_length_q=max(lengths)
    )
    for start, end in zip(offsets[:-1].tolist(), offsets[1:].tolist()):
        expected = _reference(query, key, value, start, end)
        assert torch.allclose(output[:, start:end], expected, atol=1e-5)


def test_sliding_window_is_kept_inside_long_examples():
    lengths = [12, 4]
    query, key, value, offsets = _inputs(lengths)
    module = _Module().eval()
    output, _ = varlen_attention_forward(
        module, query, key, value, None, sliding_window=5, cu_seq_lens_q=offsets, max_length_q=12
    )
    assert torch.allclose(output[:, :12], _reference(query, key, value, 0, 12, window=5), atol=1e-5)
    assert torch.allclose(output[:, 12:], _reference(query, key, value, 12, 16), atol=1e-5)


@pytest.mark.parametrize("signature", ["window_size", "is_causal"])
def test_flash_varlen_call_fits_either_torch_signature(monkeypatch, signature):
    """torch's varlen_attn took a causal flag in earlier releases and a (left, right) window later."""
    from studio.training import varlen_attention

    calls = []

    def fake_varlen(q, k, v, cu_q, cu_k, max_q, max_k, **options):
        calls.append((k.shape, options))
        return torch.zeros_like(q)

    parameters = {"scale", signature} | ({"enable_gqa"} if signature == "window_size" else set())
    monkeypatch.setattr(varlen_attention, "_VARLEN", fake_varlen)
    monkeypatch.setattr(varlen_attention, "_VARLEN_PARAMETERS", frozenset(parameters))
    query, key = torch.zeros(1, 4, 10, 8), torch.zeros(1, 2, 10, 8)  # grouped-query: 2 key/value heads
    out = varlen_attention._flash_varlen(query, key, key, torch.tensor([0, 4, 10]), 6, None, None)
    assert out.shape == (1, 10, 4, 8)
    shape, options = calls[0]
    if signature == "window_size":
        assert options["window_size"] == (-1, 0) and options["enable_gqa"] and shape[1] == 2
    else:
        assert options["is_causal"] is True and "enable_gqa" not in options and shape[1] == 4  # heads repeated
