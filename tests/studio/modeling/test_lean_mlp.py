"""Lean MLPs compute the same losses and gradients and keep less for the backward pass."""

from __future__ import annotations

import pytest
import torch

from studio.modeling.lean_mlp import SiluMul, use_lean_mlps


@pytest.fixture
def model(tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    return get_peft_model(base, LoraConfig(r=8, target_modules="all-linear", init_lora_weights=False)).train()


def _loss_grads_and_saved_bytes(model, ids):
    saved = {}

    def keep(tensor):
        saved[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    model.zero_grad(set_to_none=True)
    return loss.detach(), grads, sum(saved.values())


def test_same_losses_and_gradients_with_less_kept(model):
    ids = torch.randint(0, model.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))
    loss, grads, kept = _loss_grads_and_saved_bytes(model, ids)
    assert use_lean_mlps(model) == model.config.num_hidden_layers
    lean_loss, lean_grads, lean_kept = _loss_grads_and_saved_bytes(model, ids)
    torch.testing.assert_close(lean_loss, loss, atol=0, rtol=0)
    torch.testing.assert_close(lean_grads, grads, atol=1e-7, rtol=1e-6)
    intermediate = model.config.intermediate_size * ids.numel() * 4
    assert kept - lean_kept >= intermediate * model.config.num_hidden_layers, "silu(gate) is no longer kept"


def test_silu_mul_gradients_match_autograd():
    gate = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    up = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(SiluMul.apply, (gate, up))


def test_other_mlps_are_left_alone():
    class GeluMLP(torch.nn.Module):
        act_fn = torch.nn.GELU()

    assert use_lean_mlps(torch.nn.Sequential(GeluMLP())) == 0
