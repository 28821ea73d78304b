"""DPO and KTO as the reference implementation defines them: ln 2 at the start, the same loss and gradients
packed with a shared prompt as computed one sequence at a time, and the formulas of each loss type; ORPO and SimPO
as their papers write them and as LLaMA-Factory and TRL compute them, trained without a reference pass."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from studio.config import LoraConfig, PreferenceConfig, QuantizationConfig, TrainingConfig
from studio.data.examples import PairwiseExample
from studio.data.tokenize_kinds import EncodedPair, encode_pair
from studio.modeling.compute import resolve_plan
from studio.training.objectives import DpoObjective
from studio.training.preference import dpo_losses, dpo_tally, kto_losses, pair_losses, tally_metrics
from studio.training.token_losses import TokenLosses


@pytest.fixture(scope="module")
def pairs(tiny_tokenizer) -> list[EncodedPair]:
    """Pairs of different lengths: a demo answer (chosen) against another question's answer (rejected)."""
    import json

    from studio.paths import BUNDLED_DATA_DIR

    rows = json.loads((BUNDLED_DATA_DIR / "alpaca_zh_demo.json").read_text(encoding="utf-8"))[:9]
    examples = [
        PairwiseExample(
            [{"role": "user", "content": row["instruction"]}],
            {"role": "assistant", "content": row["output"]},
            {"role": "assistant", "content": rows[(i + 3) % len(rows)]["output"][: 10 + 7 * i]},
        )
        for i, row in enumerate(rows)
    ]
    encoded = [encode_pair(tiny_tokenizer, example, cutoff_len=512) for example in examples]
    assert len({len(p.chosen) for p in encoded}) > 3 and len({len(p.rejected) for p in encoded}) > 3
    return encoded


def _model(tiny_model_dir, init_lora_weights=False):
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation="sdpa")
    config = PeftLoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=init_lora_weights)
    return get_peft_model(base, config).train()


def _sequence_logp(model, prompt: list[int], answer: list[int]) -> torch.Tensor:
    """Straightforward: one unpadded sequence, full logits, log-softmax, the answer tokens' log-probabilities."""
    ids = torch.tensor([prompt + answer])
    logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
    return logits.log_softmax(-1).gather(1, torch.tensor(answer)[:, None]).sum()


def _straightforward_dpo(model, pairs, config: PreferenceConfig) -> torch.Tensor:
    chosen = torch.stack([_sequence_logp(model, p.prompt, p.chosen) for p in pairs])
    rejected = torch.stack([_sequence_logp(model, p.prompt, p.rejected) for p in pairs])
    reference = torch.tensor([p.reference for p in pairs])
    logits = (chosen - reference[:, 0]) - (rejected - reference[:, 1])
    return (-F.logsigmoid(config.beta * logits)).mean()


def _gradients(model) -> dict[str, torch.Tensor]:
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    return grads


@pytest.mark.parametrize("layout", ["shared_prompt", "documents_packed", "documents_padded"])
def test_packed_dpo_loss_and_gradients_equal_the_unpacked_computation(tiny_model_dir, pairs, layout):
    torch.manual_seed(1)
    for pair in pairs:  # a reference that differs from the adapter, so the loss is not flat
        pair.reference = (-40 * torch.rand(()).item() - 5, -40 * torch.rand(()).item() - 5)
    config = PreferenceConfig(beta=0.1)
    model = _model(tiny_model_dir)
    expected = _straightforward_dpo(model, pairs, config)
    expected.backward()
    expected_grads = _gradients(model)

    token_losses = TokenLosses(
        model, device="cpu", packing=layout != "documents_padded", token_budget=10**6, batch_size=3
    )
    if layout == "documents_packed":  # as on CUDA: each answer a document of its own, the prompt run twice
        token_losses = _NoSharing(token_losses)
    assert token_losses.shares_prompts == (layout == "shared_prompt")
    objective = DpoObjective(token_losses, config)
    groups = objective.lane_plans(pairs)[0] if layout != "documents_padded" else [pairs[:4], pairs[4:]]
    loss = sum(objective.loss(group, len(pairs))[0] for group in groups)
    loss.backward()
    assert loss.item() == pytest.approx(expected.item(), abs=1e-4)
    for name, gradient in _gradients(model).items():
        assert torch.allclose(gradient, expected_grads[name], atol=1e-4, rtol=1e-3), name


class _NoSharing:
    """TokenLosses with the shared-prompt layout turned off: pairs go as two documents each."""

    def __init__(self, inner):
        self.inner, self.shares_prompts = inner, False

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, documents):
        return self.inner(documents)


def _trainer(model, train, val, tmp_path, stage="dpo", preference=None, **training):
    from studio.training.loop import Trainer

    defaults = dict(
        precision="fp32",
        learning_rate=1e-3,
        batch_size=2,
        gradient_accumulation_steps=2,
        logging_steps=1,
        eval_steps=2,
        save_steps=1000,
    )
    config = TrainingConfig(stage=stage, **(defaults | training))
    plan = resolve_plan(QuantizationConfig(method="none"), config, cuda=False)
    events = []
    trainer = Trainer(
        model,
        train=train,
        val=val,
        config=config,
        lora=LoraConfig(),
        plan=plan,
        checkpoints_dir=tmp_path,
        emit=events.append,
        abort=threading.Event(),
        preference=preference or PreferenceConfig(),
    )
    return trainer, events


def test_with_lora_b_at_zero_the_dpo_loss_is_ln2_and_the_rewards_are_zero(tiny_model_dir, pairs, tmp_path):
    model = _model(tiny_model_dir, init_lora_weights=True)  # peft starts B at zero: the adapter equals the base
    assert all(not p.any() for n, p in model.named_parameters() if "lora_B" in n)
    trainer, events = _trainer(model, pairs[:6], pairs[6:], tmp_path, max_steps=1)
    trainer.compute_reference(base=True)
    assert any(e.type == "phase" and e.name == "reference" for e in events)  # the pass orpo and simpo skip
    trainer.run()
    [step] = [e for e in events if e.type == "step"]
    assert step.loss == pytest.approx(math.log(2), abs=1e-5)
    train, evaluation = [e for e in events if e.type == "preference"]  # the step's (before its update), then the eval's
    assert (train.split, evaluation.split) == ("train", "eval")
    assert abs(train.rewards_chosen) < 1e-5 and abs(train.rewards_rejected) < 1e-5 and abs(train.reward_margin) < 1e-5
    assert train.reward_accuracy == 0.0  # a tie is not a win
    assert abs(evaluation.rewards_chosen) > 1e-4  # after one update the adapter has moved away from the reference


def test_dpo_training_raises_the_margin_and_the_accuracy(tiny_model_dir, pairs, tmp_path):
    model = _model(tiny_model_dir, init_lora_weights=True)
    trainer, events = _trainer(model, pairs, pairs[:3], tmp_path, max_steps=6, learning_rate=1e-2, eval_steps=6)
    trainer.compute_reference(base=True)
    trainer.run()
    assert len([e for e in events if e.type == "preference" and e.split == "train"]) == 6
    [evaluation] = [e for e in events if e.type == "preference" and e.split == "eval"]  # on pairs it trained on
    assert evaluation.reward_margin > 0.1 and evaluation.reward_accuracy == 1.0
    [evaluated] = [e for e in events if e.type == "eval"]
    assert evaluated.eval_loss < math.log(2) - 0.01


def test_best_checkpoint_by_reward_accuracy(tiny_model_dir, pairs, tmp_path):
    model = _model(tiny_model_dir, init_lora_weights=True)
    trainer, events = _trainer(
        model, pairs[:6], pairs[6:], tmp_path, max_steps=4, best_metric="reward_accuracy", early_stopping_patience=None
    )
    trainer.compute_reference(base=True)
    trainer.run()
    evals = [e for e in events if e.type == "preference" and e.split == "eval"]
    best = max(evals, key=lambda e: e.reward_accuracy)  # the first of equals stays the best
    assert trainer.state.best_step == best.step and trainer.state.best_score == best.reward_accuracy


# -- the formulas ---------------------------------------------------------------------------------------


def test_dpo_loss_types_follow_their_formulas():
    chosen, rejected = torch.tensor([-10.0, -4.0]), torch.tensor([-12.0, -3.0])
    ref_chosen, ref_rejected = torch.tensor([-11.0, -4.5]), torch.tensor([-11.0, -4.0])
    h = (chosen - ref_chosen) - (rejected - ref_rejected)  # [1 - (-1), 0.5 - 1] = [2, -0.5]
    for loss, expected in [
        (PreferenceConfig(beta=0.5), -F.logsigmoid(0.5 * h)),
        (PreferenceConfig(beta=0.5, label_smoothing=0.2), -0.8 * F.logsigmoid(0.5 * h) - 0.2 * F.logsigmoid(-0.5 * h)),
        (PreferenceConfig(beta=0.5, loss="hinge"), torch.relu(1 - 0.5 * h)),
        (PreferenceConfig(beta=0.5, loss="ipo"), (h - 1 / (2 * 0.5)) ** 2),
    ]:
        losses, chosen_rewards, rejected_rewards = dpo_losses(chosen, rejected, ref_chosen, ref_rejected, loss)
        assert torch.allclose(losses, expected)
    assert torch.allclose(chosen_rewards, 0.5 * (chosen - ref_chosen))
    metrics = tally_metrics(dpo_tally(losses, chosen_rewards, rejected_rewards))
    assert metrics["reward_accuracy"] == 0.5  # 0.5 > -0.5, but 0.25 < 0.5
    assert metrics["reward_margin"] == pytest.approx(((0.5 + 0.5) + (0.25 - 0.5)) / 2)


def test_kto_loss_weighs_desirable_and_undesirable_answers():
    config = PreferenceConfig(beta=0.2, desirable_weight=1.5, undesirable_weight=0.5)
    policy, reference = torch.tensor([-5.0, -7.0]), torch.tensor([-6.0, -6.0])
    desirable, kl = torch.tensor([True, False]), torch.tensor(0.3)
    losses, rewards = kto_losses(policy, reference, desirable, kl, config)
    assert losses[0].item() == pytest.approx(1.5 * (1 - torch.sigmoid(torch.tensor(0.2 * (1.0 - 0.3)))).item())
    assert losses[1].item() == pytest.approx(0.5 * (1 - torch.sigmoid(torch.tensor(0.2 * (0.3 + 1.0)))).item())
    assert rewards.tolist() == pytest.approx([0.2, -0.2])


def test_orpo_and_simpo_follow_their_papers():
    # (n, 2) summed log-probabilities of (chosen, rejected) and their token counts
    sums = torch.tensor([[-6.0, -9.0], [-2.0, -0.5], [-12.0, -12.0]], dtype=torch.float64)
    counts = torch.tensor([[4.0, 3.0], [8.0, 5.0], [6.0, 3.0]], dtype=torch.float64)
    chosen, rejected = sums[:, 0] / counts[:, 0], sums[:, 1] / counts[:, 1]  # length-normalised
    beta = 0.25

    def odds(average_logp):  # ORPO eq. 4: P / (1 - P) of the length-normalised likelihood
        probability = torch.exp(average_logp)
        return probability / (1 - probability)

    orpo_paper = -chosen + beta * -torch.log(torch.sigmoid(torch.log(odds(chosen) / odds(rejected))))  # eq. 6, 7
    gamma = 0.8
    simpo_paper = -torch.log(torch.sigmoid(beta * chosen - beta * rejected - gamma))  # SimPO eq. 6
    for config, expected in [
        (PreferenceConfig(loss="orpo", beta=beta), orpo_paper),
        (PreferenceConfig(loss="simpo", beta=beta, simpo_gamma=gamma), simpo_paper),
        (PreferenceConfig(loss="orpo", beta=beta, ftx=0.5), orpo_paper - 0.5 * chosen),  # as LLaMA-Factory: on top
        (PreferenceConfig(loss="simpo", beta=beta, simpo_gamma=gamma, ftx=2.0), simpo_paper - 2.0 * chosen),
    ]:
        losses, chosen_rewards, rejected_rewards = pair_losses(sums, counts, None, config)
        assert torch.allclose(losses, expected, atol=1e-12), config
        # the rewards LLaMA-Factory and TRL log: beta times the per-token average log-probability
        assert torch.allclose(chosen_rewards, beta * chosen) and torch.allclose(rejected_rewards, beta * rejected)
    metrics = tally_metrics(dpo_tally(losses, chosen_rewards, rejected_rewards))
    assert metrics["reward_accuracy"] == pytest.approx(2 / 3)  # -1.5 > -3 and -2 > -4, but -0.25 < -0.1
    assert metrics["reward_margin"] == pytest.approx(beta * (chosen - rejected).mean().item())


def test_orpo_stays_finite_for_an_answer_the_model_is_certain_of():
    sums = torch.tensor([[0.0, -3.0], [-1e-7, -2.0], [-5.0, 0.0]], requires_grad=True)  # probability 1 (float32)
    counts = torch.tensor([[2.0, 2.0], [3.0, 1.0], [2.0, 4.0]])
    losses, _, _ = pair_losses(sums, counts, None, PreferenceConfig(loss="orpo", beta=0.1))
    losses.sum().backward()
    assert torch.isfinite(losses).all() and torch.isfinite(sums.grad).all()
    assert losses[0].item() == pytest.approx(0.0, abs=1e-6)  # certain of the chosen: no NLL, odds ratio saturated
    # certain of the rejected: a large, finite odds-ratio term (its 1 - P held at 1e-30)
    log_odds = -2.5 - (math.log1p(-math.exp(-2.5)) - math.log(1e-30))
    assert losses[2].item() == pytest.approx(2.5 - 0.1 * F.logsigmoid(torch.tensor(log_odds)).item(), rel=1e-5)


def test_orpo_and_simpo_equal_llamafactory_and_trl():
    """bench/preference_loss_parity.py wrote LLaMA-Factory 0.9.5's (CustomDPOTrainer, pref_ftx included) and TRL
    0.24's (ORPOTrainer.odds_ratio_loss, CPOTrainer.cpo_loss with loss_type simpo) losses and rewards of fixed
    logits; the studio gets the same answers' log-probability sums and token counts."""
    fixture = json.loads((Path(__file__).parent / "fixtures" / "preference_losses.json").read_text(encoding="utf-8"))
    sums = torch.tensor([fixture["chosen_sums"], fixture["rejected_sums"]]).T
    counts = torch.tensor([fixture["chosen_counts"], fixture["rejected_counts"]], dtype=torch.float32).T
    assert fixture["cases"] and {case["case"]["loss"] for case in fixture["cases"]} == {"orpo", "simpo"}
    for case in fixture["cases"]:
        config = PreferenceConfig(**case["case"])
        losses, chosen, rejected = pair_losses(sums, counts, None, config)
        lf = case["llamafactory"]
        assert losses.tolist() == pytest.approx(lf["losses"], abs=1e-5)
        assert losses.mean().item() == pytest.approx(lf["loss"], abs=1e-5)
        assert chosen.tolist() == pytest.approx(lf["rewards_chosen"], abs=1e-6)
        assert rejected.tolist() == pytest.approx(lf["rewards_rejected"], abs=1e-6)
        metrics = tally_metrics(dpo_tally(losses, chosen, rejected))
        assert [metrics[k] for k in ("rewards_chosen", "rewards_rejected", "reward_accuracy", "reward_margin")] == (
            pytest.approx([lf["metrics"][k] for k in ("chosen", "rejected", "accuracies", "margins")], abs=1e-5)
        )
        without_ftx, _, _ = pair_losses(sums, counts, None, config.model_copy(update={"ftx": 0.0}))
        assert without_ftx.tolist() == pytest.approx(case["trl"]["losses"], abs=1e-5)  # TRL has no pref_ftx


@pytest.mark.parametrize(
    "preference",
    [PreferenceConfig(loss="orpo", beta=0.1, reference="base"), PreferenceConfig(loss="simpo", beta=2.0)],
    ids=["orpo", "simpo"],
)
def test_reference_free_losses_train_without_a_reference_pass(tiny_model_dir, pairs, tmp_path, preference):
    for pair in pairs:
        pair.reference = None  # what the module's other tests stored
    model = _model(tiny_model_dir, init_lora_weights=True)
    trainer, events = _trainer(
        model, pairs, pairs, tmp_path, preference=preference, max_steps=6, learning_rate=1e-2, eval_steps=6
    )
    assert not trainer.objective.needs_reference and "no reference model" in trainer.describe()
    with torch.no_grad():
        before = trainer.objective.eval_tally(pairs)
    trainer.compute_reference(base=True)  # as the worker calls it: nothing to compute
    assert all(pair.reference is None for pair in pairs)
    trainer.run()
    assert not any(e.type == "phase" and e.name == "reference" for e in events)
    assert len([e for e in events if e.type == "preference" and e.split == "train"]) == 6
    with torch.no_grad():
        after = trainer.objective.eval_tally(pairs)
    first, last = tally_metrics(before), tally_metrics(after)
    assert last["loss"] < first["loss"] - 0.05, (first, last)
    assert last["reward_margin"] > first["reward_margin"]  # beta * (chosen - rejected) per-token averages
    [evaluated] = [e for e in events if e.type == "preference" and e.split == "eval"]
    assert evaluated.reward_margin == pytest.approx(last["reward_margin"], abs=1e-4)
