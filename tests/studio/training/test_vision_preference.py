"""DPO and KTO with pictures on the tiny vision-language model of each family: the answers' log-probabilities that
the reference pass stores and the losses use are what transformers' own forward gives for prompt + answer with the
same pixel inputs; pairs with pictures never take the shared-prompt layout, and the run says so."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from studio.config import DataConfig, FinetuningConfig, LoraConfig, ModelConfig, PreferenceConfig
from studio.data.tokenize import IGNORE_INDEX, Encoded
from studio.data.tokenize_kinds import EncodedFeedback, EncodedPair
from studio.training.objectives import DpoObjective, KtoObjective
from studio.training.pictures import TrainingPictures
from studio.training.preference import COUNT
from studio.training.shared_prompts import shareable
from studio.training.token_losses import TokenLosses
from studio.training.weights import adapter_off

# summed log-probabilities of whole answers are ~400 in size, where a float32 step is 3e-5: packed and one-by-one
# forwards sum in another order (2 steps apart here, more on other CPUs); a wrong picture moves them by 0.02 or more
SUMS = 5e-4


@pytest.fixture(scope="module")
def vl(each_vl_model_dir):
    """(tokenizer, training pictures, data-side encoder) of the family's tiny model."""
    from studio.modeling.loader import load_tokenizer

    model = ModelConfig(name_or_path=str(each_vl_model_dir))
    tokenizer = load_tokenizer(model, str(each_vl_model_dir))
    pictures = TrainingPictures.of(model, str(each_vl_model_dir))
    assert pictures is not None
    return tokenizer, pictures, pictures.encoder(tokenizer)


def _stage_items(vl, name: str, stage: str, picked: list[int]) -> list:
    from studio.data.prepare import load_stage_examples, tokenize_for_stage

    tokenizer, _, encoder = vl
    [loaded] = load_stage_examples(DataConfig(datasets=[name]), stage)
    return list(
        tokenize_for_stage(tokenizer, loaded.examples, DataConfig(), stage, encoder).examples[i] for i in picked
    )


@pytest.fixture(scope="module")
def pairs(vl) -> list[EncodedPair]:
    """Demo pairs of one picture and of two, and one pair without pictures."""
    chosen = _stage_items(vl, "shapes_zh_dpo_demo", "dpo", [0, 1, 41])
    text = _stage_items(vl, "dpo_zh_demo", "dpo", [0])
    assert [len(pair.images) for pair in chosen + text] == [1, 1, 2, 0]
    return chosen + text


def _model(model_dir):
    from transformers import AutoModelForImageTextToText

    from studio.modeling.methods import attach_method

    torch.manual_seed(0)
    base = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
    model = attach_method(base.requires_grad_(False), FinetuningConfig(), LoraConfig())
    with torch.no_grad():  # LoRA's B starts at zero: moved, the adapter's log-probabilities differ from the base's
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)
    return model.eval()


def _own_logp(model, pictures: TrainingPictures, document: Encoded) -> float:
    """transformers' own forward of one document, with the processor's pixels of its pictures: the summed
    log-probability of its labelled tokens."""
    ids = torch.tensor([document.input_ids])
    shown = {}
    if document.images:
        pixels, grid, _ = pictures.inputs(list(document.images))
        image_token = model.get_base_model().config.image_token_id
        shown = {"pixel_values": pixels, "image_grid_thw": grid, "mm_token_type_ids": (ids == image_token).long()}
    with torch.no_grad():
        logits = model(input_ids=ids, **shown).logits[0, :-1].float()
    targets = torch.tensor(document.labels[1:])
    labelled = targets != IGNORE_INDEX
    return logits.log_softmax(-1)[labelled].gather(1, targets[labelled][:, None]).sum().item()


def _own_pair_logps(model, pictures, pairs: list[EncodedPair]) -> torch.Tensor:
    return torch.tensor(
        [[_own_logp(model, pictures, pair.document(side)) for side in (pair.chosen, pair.rejected)] for pair in pairs]
    )


@pytest.mark.parametrize("packing", [True, False])
def test_dpo_log_probabilities_of_picture_pairs_equal_the_model_s_own_forward(each_vl_model_dir, vl, pairs, packing):
    _, pictures, _ = vl
    model = _model(each_vl_model_dir)
    losses = TokenLosses(model, device="cpu", packing=packing, token_budget=10**6, batch_size=2, pictures=pictures)
    objective = DpoObjective(losses, PreferenceConfig())
    assert not any(shareable(pair) for pair in pairs[:3]) and shareable(pairs[3])
    assert "Pairs: prompt and any pictures it shows run with each answer, as two documents" in objective.describe()
    pairs = [dataclasses.replace(pair) for pair in pairs]  # the references stored below stay in this test
    with torch.no_grad(), adapter_off(model):
        objective.store_reference(pairs)  # the reference pass: the base model, the same pictures
        base = _own_pair_logps(model, pictures, pairs)
    assert torch.allclose(torch.tensor([pair.reference for pair in pairs]), base, atol=SUMS, rtol=0)
    with torch.no_grad():
        logps, counts = objective.answer_logps(pairs)
        loss, tally = objective.loss(pairs, weight=len(pairs))
    adapted = _own_pair_logps(model, pictures, pairs)
    assert torch.allclose(logps, adapted, atol=SUMS, rtol=0), (logps - adapted).abs().max()
    assert counts.tolist() == [[len(pair.chosen), len(pair.rejected)] for pair in pairs]
    margins = (adapted[:, 0] - base[:, 0]) - (adapted[:, 1] - base[:, 1])
    expected = -F.logsigmoid(PreferenceConfig().beta * margins).mean()
    # margins of four sums, times beta (0.1) and the sigmoid's slope (< 1): SUMS' error moves the loss < 2e-4
    assert loss.item() == pytest.approx(expected.item(), abs=2e-4) and loss.item() != pytest.approx(math.log(2))
    assert tally[COUNT].item() == len(pairs)
    # the pixels matter: the same tokens after another picture of the same size give other log-probabilities
    swapped = [dataclasses.replace(pairs[0], images=pairs[1].images)]
    with torch.no_grad():
        assert not torch.allclose(objective.answer_logps(swapped)[0], logps[:1], atol=1e-3)


def test_kto_log_probabilities_of_examples_and_kl_examples_equal_the_model_s_own_forward(tiny_vl_model_dir):
    from studio.modeling.loader import load_tokenizer

    model_config = ModelConfig(name_or_path=str(tiny_vl_model_dir))
    tokenizer = load_tokenizer(model_config, str(tiny_vl_model_dir))
    pictures = TrainingPictures.of(model_config, str(tiny_vl_model_dir))
    items: list[EncodedFeedback] = _stage_items(
        (tokenizer, pictures, pictures.encoder(tokenizer)), "shapes_zh_kto_demo", "kto", [0, 1, 2, 3]
    )
    assert all(item.document.images == item.kl_document.images != () for item in items)
    model = _model(tiny_vl_model_dir)
    losses = TokenLosses(model, device="cpu", packing=True, token_budget=10**6, batch_size=2, pictures=pictures)
    objective = KtoObjective(losses, PreferenceConfig())
    with torch.no_grad(), adapter_off(model):
        objective.store_reference(items)
        base = [[_own_logp(model, pictures, d) for d in (item.document, item.kl_document)] for item in items]
    assert torch.allclose(torch.tensor([item.reference for item in items]), torch.tensor(base), atol=SUMS, rtol=0)
    with torch.no_grad():
        objective.prepare_step(items, lambda run, plans: [run(group) for plan in plans for group in plan])
        logps, _ = objective._document_logps([item.document for item in items])
        loss, tally = objective.loss(items, weight=len(items))
    own = torch.tensor([_own_logp(model, pictures, item.document) for item in items])
    assert torch.allclose(logps, own, atol=SUMS, rtol=0)
    own_kl = sum(_own_logp(model, pictures, item.kl_document) for item in items) / len(items)
    kl = max(0.0, own_kl - sum(b[1] for b in base) / len(items))
    assert objective.kl.item() == pytest.approx(kl, abs=SUMS)
    assert math.isfinite(loss.item()) and tally[COUNT].item() == len(items)
