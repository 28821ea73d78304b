"""The packed path must learn exactly what the padded path learns: same per-token losses, same gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from studio.data.tokenize import IGNORE_INDEX, Encoded
from studio.training.label_loss import LabelCrossEntropy
from studio.training.packing import deal, pack, plan_lanes, split_by_tokens
from studio.training.token_losses import TokenLosses
from tests.support import demo_conversations


@pytest.fixture(scope="module")
def examples(tiny_tokenizer) -> list[Encoded]:
    encoded = demo_conversations(tiny_tokenizer, 7)
    assert len({len(e.input_ids) for e in encoded}) > 3, "lengths must differ for the padding to matter"
    return encoded


def _model(tiny_model_dir, seed=0):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation="sdpa")
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False))
    return model.train()


def _reference_losses(model, examples: list[Encoded]) -> torch.Tensor:
    """Plain transformers: right-padded batch, attention mask, full logits, shifted labels."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.tensor([e.input_ids + [0] * (width - len(e.input_ids)) for e in examples])
    labels = torch.tensor([e.labels + [IGNORE_INDEX] * (width - len(e.labels)) for e in examples])
    mask = (torch.arange(width)[None, :] < torch.tensor([len(e.input_ids) for e in examples])[:, None]).long()
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    targets = labels[:, 1:]
    losses = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="none")
    return losses[targets.flatten() != IGNORE_INDEX]


def test_packed_per_token_losses_equal_padded(tiny_model_dir, examples):
    model = _model(tiny_model_dir)
    reference = _reference_losses(model, examples)
    packed = TokenLosses(model, device="cpu", packing=True, token_budget=10**6, batch_size=2)
    assert packed.packing and packed.fused
    losses = packed(examples)
    assert losses.shape == reference.shape
    assert torch.allclose(losses, reference, atol=1e-3, rtol=0), (losses - reference).abs().max()


def test_packed_gradients_equal_padded(tiny_model_dir, examples):
    model = _model(tiny_model_dir)
    _reference_losses(model, examples).sum().backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    TokenLosses(model, device="cpu", packing=True, token_budget=10**6, batch_size=2)(examples).sum().backward()
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            assert torch.allclose(parameter.grad, expected[name], atol=1e-4, rtol=1e-3), name


def test_padded_fallback_gives_the_same_losses(tiny_model_dir, examples):
    model = _model(tiny_model_dir)
    padded = TokenLosses(model, device="cpu", packing=False, token_budget=0, batch_size=3)
    losses = torch.cat([padded(group) for group in [examples]])
    assert torch.allclose(losses, _reference_losses(model, examples), atol=1e-3, rtol=0)


def test_no_attention_across_examples(tiny_model_dir, examples):
    """Replacing the first example changes nothing in the losses of the second."""
    model = _model(tiny_model_dir)
    packed = TokenLosses(model, device="cpu", packing=True, token_budget=10**6, batch_size=2)
    first, second, other = examples[0], examples[1], examples[2]
    count = second.num_label_tokens - (second.labels[0] != IGNORE_INDEX)
    with torch.no_grad():
        alone = packed([second])
        after_first = packed([first, second])[-count:]
        after_other = packed([other, second])[-count:]
    assert torch.allclose(after_first, alone, atol=1e-5) and torch.allclose(after_other, alone, atol=1e-5)


def test_fused_cross_entropy_matches_autograd():
    torch.manual_seed(0)
    hidden = torch.randn(37, 16, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(50, 16, dtype=torch.float64)
    targets = torch.randint(0, 50, (37,))
    scale = torch.rand(37, dtype=torch.float64)
    fused = LabelCrossEntropy.apply(hidden, weight, targets, 5)
    (fused.double() * scale).sum().backward()
    fused_grad = hidden.grad.clone()
    hidden.grad = None
    plain = F.cross_entropy(hidden @ weight.t(), targets, reduction="none")
    (plain * scale).sum().backward()
    assert torch.allclose(fused.double(), plain, atol=1e-5)
    assert torch.allclose(fused_grad, hidden.grad, atol=1e-6)


def test_pack_restarts_positions_and_never_predicts_across_examples():
    a = Encoded([1, 2, 3], [IGNORE_INDEX, 2, 3], False)
    b = Encoded([4, 5], [IGNORE_INDEX, 5], False)
    packed = pack([a, b])
    assert packed.input_ids.tolist() == [[1, 2, 3, 4, 5]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 0, 1]]
    assert packed.targets.tolist() == [2, 3, IGNORE_INDEX, 5, IGNORE_INDEX]
    assert packed.cu_seqlens.tolist() == [0, 3, 5] and packed.max_length == 3


def _sizes(groups):
    return [[len(e.input_ids) for e in g] for g in groups]


def _examples(*sizes):
    return [Encoded([0] * n, [0] * n, False) for n in sizes]


def test_split_by_tokens_keeps_order_and_splits_about_evenly():
    assert _sizes(split_by_tokens(_examples(5, 4, 3, 9, 2), budget=8)) == [[5, 4], [3], [9, 2]]
    assert _sizes(split_by_tokens(_examples(*[100] * 10), budget=512)) == [[100] * 5, [100] * 5]
    assert [sum(g) for g in _sizes(split_by_tokens(_examples(*[100] * 10), budget=300))] == [200, 300, 200, 300]
    assert _sizes(split_by_tokens(_examples(1000, 10), budget=512)) == [[1000], [10]]


def test_split_by_tokens_gives_every_lane_a_group():
    assert len(split_by_tokens(_examples(5, 4, 3, 9, 2), budget=8, multiple=2)) == 4
    assert len(split_by_tokens(_examples(100, 100, 100), budget=512, multiple=2)) == 2
    assert _sizes(split_by_tokens(_examples(7), budget=512, multiple=2)) == [[7]]


def test_lanes_get_shares_of_equal_work_in_the_same_number_of_micro_batches():
    examples = _examples(400, 300, 300, 200, 100, 100, 50, 50)
    plans = plan_lanes(examples, budget=300, lanes=2)
    assert len(plans) == 2 and len(plans[0]) == len(plans[1]) == 3
    totals = [sum(len(e.input_ids) for group in lane for e in group) for lane in plans]
    assert abs(totals[0] - totals[1]) <= 50
    dealt = [e for lane in plans for group in lane for e in group]
    assert sorted(map(id, dealt)) == sorted(map(id, examples)), "every example exactly once"
    for lane in plans:  # within a micro-batch the step's order is kept
        for group in lane:
            positions = [next(i for i, x in enumerate(examples) if x is e) for e in group]
            assert positions == sorted(positions)
    sizes = [[sum(len(e.input_ids) for e in group) for group in lane] for lane in plans]
    assert sizes[0] == sorted(sizes[0]) and sizes[1] == sorted(sizes[1], reverse=True), "large beside small"


def test_one_lane_plan_is_the_consecutive_split():
    examples = _examples(5, 4, 3, 9, 2)
    assert plan_lanes(examples, budget=8, lanes=1) == [split_by_tokens(examples, budget=8)]


def test_fewer_examples_than_lanes_leave_no_empty_plan():
    assert _sizes(plan_lanes(_examples(7), budget=512, lanes=2)[0]) == [[7]]
    assert len(plan_lanes(_examples(7), budget=512, lanes=2)) == 1
    assert plan_lanes([], budget=512, lanes=2) == plan_lanes([], budget=512, lanes=1) == []


def test_deal_gives_the_largest_first_to_the_least_loaded_share_in_original_order():
    assert deal([3, 1, 2, 2], 2, float) == [[3, 1], [2, 2]]
    assert deal([1, 1000, 500, 500], 2, float) == [[1, 1000], [500, 500]]
