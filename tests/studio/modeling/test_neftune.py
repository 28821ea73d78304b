"""NEFTune (training.neftune_alpha): uniform noise of ±alpha/sqrt(L·d) on the input embeddings of training passes,
L each example's own length, packed or padded; none in evaluation or generation; a run with it still learns."""

from __future__ import annotations

import math

import pytest
import torch

from studio.config import TrainingConfig
from studio.training.token_losses import TokenLosses
from tests.support import demo_conversations, run_worker, trainable_model

ALPHA = 5.0


@pytest.fixture(scope="module")
def examples(tiny_tokenizer):
    return demo_conversations(tiny_tokenizer, 3)


@pytest.fixture(scope="module")
def noisy(tiny_model_dir):
    """The trainable model a run with neftune_alpha builds (studio.training.trainable)."""
    model, _ = trainable_model(tiny_model_dir, TrainingConfig(neftune_alpha=ALPHA, precision="fp32"))
    return model


def _noise_seen(model, run) -> list[torch.Tensor]:
    """The noise of each embedding call `run` makes: the embedding's output (after the NEFTune hook, which was
    registered first) minus the plain lookup of its input ids."""
    embedding = model.get_input_embeddings()
    seen = []

    def capture(module, inputs, output):
        seen.append((output - torch.nn.functional.embedding(inputs[0], module.weight)).detach())

    handle = embedding.register_forward_hook(capture)
    try:
        run()
    finally:
        handle.remove()
    return seen


def _check_bound(noise: torch.Tensor, length: int, width: int) -> None:
    bound = ALPHA / math.sqrt(length * width)
    assert noise.abs().max() <= bound * (1 + 1e-5)
    assert noise.abs().max() > 0.9 * bound  # uniform over the whole range: thousands of draws reach near its edge


def test_packed_training_pass_adds_noise_scaled_by_each_examples_length(noisy, examples):
    noisy.train()
    losses = TokenLosses(noisy, device="cpu", packing=True, token_budget=10**6, batch_size=4)
    (noise,) = _noise_seen(noisy, lambda: losses(examples))
    width, start = noise.shape[-1], 0
    for example in examples:  # laid end to end in one row: each example's noise follows its own length
        length = len(example.input_ids)
        _check_bound(noise[0, start : start + length], length, width)
        start += length
    assert start == noise.shape[1]


def test_padded_training_pass_scales_by_the_example_not_the_padded_row(noisy, examples):
    noisy.train()
    losses = TokenLosses(noisy, device="cpu", packing=False, token_budget=10**6, batch_size=4)
    (noise,) = _noise_seen(noisy, lambda: losses(examples))
    assert len({len(e.input_ids) for e in examples}) > 1  # rows of different lengths, padded to the longest
    for row, example in enumerate(examples):
        length = len(example.input_ids)
        _check_bound(noise[row, :length], length, noise.shape[-1])


def test_no_noise_in_evaluation_without_gradients_or_in_generation(noisy, examples):
    losses = TokenLosses(noisy, device="cpu", packing=True, token_budget=10**6, batch_size=4)
    noisy.eval()
    evaluation = _noise_seen(noisy, lambda: losses(examples))
    noisy.train()  # a run's generation (watched prompts, GRPO samples) happens between training steps
    with torch.no_grad():
        without_gradients = _noise_seen(noisy, lambda: losses(examples))
    prompt = torch.tensor([examples[0].input_ids[:8]])
    answers = []
    generation = _noise_seen(noisy, lambda: answers.append(noisy.generate(prompt, max_new_tokens=4, do_sample=False)))
    assert len(generation) == 4  # the prompt, then one call per new token
    assert all(not noise.any() for noise in evaluation + without_gradients + generation)
    again = noisy.generate(prompt, max_new_tokens=4, do_sample=False)
    assert torch.equal(answers[0], again)


def test_hooks_come_off_and_no_alpha_adds_none(tiny_model_dir, examples):
    from studio.modeling.neftune import add_neftune

    model, _ = trainable_model(tiny_model_dir, TrainingConfig(precision="fp32"))
    model.train()
    losses = TokenLosses(model, device="cpu", packing=True, token_budget=10**6, batch_size=4)
    assert not _noise_seen(model, lambda: losses(examples))[0].any()
    assert add_neftune(model.get_base_model(), None) is None
    hooks = add_neftune(model.get_base_model(), ALPHA)
    assert _noise_seen(model, lambda: losses(examples))[0].any()
    hooks.remove()
    assert not _noise_seen(model, lambda: losses(examples))[0].any()


def test_a_run_with_neftune_learns(tmp_path, tiny_model_dir):
    # alpha 1: the tiny random model's embeddings are about 0.02 in size, and alpha 5's noise (about 0.1 for its
    # examples) would drown them; a trained model's embeddings are of the noise's size or larger
    run = {"training.neftune_alpha": "1", "training.max_steps": "6", "training.eval_steps": "3"}
    _, events = run_worker(tmp_path / "neftune", tiny_model_dir, **run)
    losses = [e.loss for e in events if e.type == "step"]
    assert len(losses) == 6 and all(math.isfinite(loss) for loss in losses)
    assert sum(losses[3:]) < sum(losses[:3])
    first, last = [e.eval_loss for e in events if e.type == "eval"]  # noise-free, on the same validation examples
    assert last < first
