"""A vision-language model's forward pass over the picture demo set, on the tiny model of each family (Qwen2-VL,
Qwen2.5-VL's windowed vision attention, Qwen3-VL's 16-pixel patches and deepstack): packed rows, padded rows and
transformers' own forward give the same per-token losses and gradients; pictures and prompts are never learned;
examples in a packed row see neither each other's tokens nor each other's pictures; and a short run learns."""

from __future__ import annotations

import dataclasses
import threading

import pytest
import torch
import torch.nn.functional as F

from studio.config import DataConfig, FinetuningConfig, LoraConfig, ModelConfig, QuantizationConfig, TrainingConfig
from studio.data.tokenize import IGNORE_INDEX, Encoded
from studio.modeling.compute import resolve_plan
from studio.modeling.vision import VisionTokens, vision_family
from studio.training.pictures import TrainingPictures
from studio.training.token_losses import TokenLosses


@pytest.fixture(scope="module")
def tokenizer(each_vl_model_dir):
    from studio.modeling.loader import load_tokenizer

    return load_tokenizer(ModelConfig(name_or_path=str(each_vl_model_dir)), str(each_vl_model_dir))


@pytest.fixture(scope="module")
def pictures(each_vl_model_dir) -> TrainingPictures:
    found = TrainingPictures.of(ModelConfig(name_or_path=str(each_vl_model_dir)), str(each_vl_model_dir))
    assert found is not None
    return found


@pytest.fixture(scope="module")
def demo(each_vl_model_dir, tokenizer) -> list[Encoded]:
    """The picture demo set as training reads it (studio.data), then one text-only conversation."""
    from studio.data.picture_tokens import PictureEncoder
    from studio.data.prepare import load_conversations, tokenize_conversations

    encoder = PictureEncoder.for_model(tokenizer, ModelConfig(name_or_path=str(each_vl_model_dir)))
    examples = []
    for name in ("shapes_zh_demo", "alpaca_zh_demo"):
        data = DataConfig(datasets=[name], max_samples=None if name == "shapes_zh_demo" else 1)
        conversations = [c for loaded in load_conversations(data) for c in loaded.examples]
        examples += tokenize_conversations(tokenizer, conversations, data, encoder).examples
    assert not examples[-1].images and {len(e.images) for e in examples[:-1]} == {1, 2}
    return examples


def _batch(demo: list[Encoded]) -> list[Encoded]:
    """Six examples: one picture, two pictures, no picture among them."""
    two = next(e for e in demo if len(e.images) == 2)
    return [demo[0], two, demo[-1], demo[1], demo[2], demo[3]]


def _model(model_dir, finetuning: FinetuningConfig | None = None):
    from transformers import AutoModelForImageTextToText

    from studio.modeling.methods import attach_method

    torch.manual_seed(0)
    base = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
    model = attach_method(base.requires_grad_(False), finetuning or FinetuningConfig(), LoraConfig())
    with torch.no_grad():  # LoRA's B starts at zero: moved, the adapter changes the losses and has gradients in A
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)
    return model.train()


def _reference(model, examples: list[Encoded], pictures: TrainingPictures) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' own forward: right-padded rows, the processor's pixels, full logits. (per-token losses, the
    model's own mean loss from labels)."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.tensor([e.input_ids + [0] * (width - len(e.input_ids)) for e in examples])
    labels = torch.tensor([e.labels + [IGNORE_INDEX] * (width - len(e.labels)) for e in examples])
    mask = (torch.arange(width)[None, :] < torch.tensor([len(e.input_ids) for e in examples])[:, None]).long()
    paths = [path for e in examples for path in e.images]
    shown: dict[str, torch.Tensor] = {}
    if paths:
        pixels, grid, _ = pictures.inputs(paths)
        image_token = model.get_base_model().config.image_token_id
        shown = {"pixel_values": pixels, "image_grid_thw": grid, "mm_token_type_ids": (ids == image_token).long()}
    output = model(input_ids=ids, attention_mask=mask, labels=labels, **shown)
    targets = labels[:, 1:].flatten()
    losses = F.cross_entropy(output.logits[:, :-1].flatten(0, 1).float(), targets, reduction="none")
    return losses[targets != IGNORE_INDEX], output.loss


def test_packed_padded_and_the_model_s_own_forward_give_the_same_losses(each_vl_model_dir, demo, pictures):
    model, batch = _model(each_vl_model_dir), _batch(demo)
    reference, mean = _reference(model, batch, pictures)
    packed = TokenLosses(model, device="cpu", packing=True, token_budget=10**6, batch_size=2, pictures=pictures)
    padded = TokenLosses(model, device="cpu", packing=False, token_budget=0, batch_size=8, pictures=pictures)
    assert packed.packing and "3-D rotary positions" in packed.describe()
    for losses in (packed(batch), padded(batch)):
        assert losses.shape == reference.shape
        assert torch.allclose(losses, reference, atol=1e-5, rtol=0), (losses - reference).abs().max()
    assert packed(batch).mean().item() == pytest.approx(mean.item(), abs=1e-5)
    text_only, _ = _reference(model, [demo[-1]], pictures)  # a micro-batch without pictures: no vision tower
    assert torch.allclose(packed([demo[-1]]), text_only, atol=1e-5, rtol=0)


def test_packed_gradients_equal_padded_ones_in_every_trained_part(each_vl_model_dir, demo, pictures):
    opened = FinetuningConfig(freeze_vision_tower=False, freeze_multi_modal_projector=False)
    grads = []
    for packing in (True, False):
        model = _model(each_vl_model_dir, opened)
        TokenLosses(model, device="cpu", packing=packing, token_budget=10**6, batch_size=8, pictures=pictures)(
            _batch(demo)
        ).sum().backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.requires_grad})
    packed, padded = grads
    assert any("visual.blocks" in n for n in packed) and any("visual.merger" in n for n in packed)
    if vision_family(each_vl_model_dir) == "qwen3_vl":  # deepstack: block 0's features also enter language layer 0
        assert any("visual.deepstack_merger_list.0" in n for n in packed)
    for name, grad in packed.items():
        assert grad is not None and grad.abs().sum() > 0, name  # the pictures' gradients reach the vision tower
        assert torch.allclose(grad, padded[name], atol=1e-5, rtol=1e-4), name


def test_examples_in_a_packed_row_see_neither_each_other_s_tokens_nor_pictures(each_vl_model_dir, demo, pictures):
    model = _model(each_vl_model_dir)
    packed = TokenLosses(model, device="cpu", packing=True, token_budget=10**6, batch_size=2, pictures=pictures)
    second = demo[5]
    with torch.no_grad():
        alone = packed([second])
        after_one = packed([demo[0], second])[-len(alone) :]
        after_other = packed([next(e for e in demo if len(e.images) == 2), second])[-len(alone) :]
    assert torch.allclose(after_one, alone, atol=1e-6) and torch.allclose(after_other, alone, atol=1e-6)


def test_sampling_gives_the_language_model_back_its_packed_attention(each_vl_model_dir, demo, pictures):
    """Watched prompts are answered with SDPA over every part; afterwards the language model packs again (with SDPA
    the packed row would attend across examples) and the vision tower keeps its own attention."""
    from studio.training.reinforce import sampling_mode

    model = _model(each_vl_model_dir)
    packed = TokenLosses(model, device="cpu", packing=True, token_budget=10**6, batch_size=2, pictures=pictures)
    config = model.get_base_model().config
    with torch.no_grad():
        before = packed(_batch(demo))
        with sampling_mode(model):
            assert config.text_config._attn_implementation == "sdpa"
        after = packed(_batch(demo))
    assert torch.equal(before, after)
    assert config.text_config._attn_implementation.startswith("studio_varlen")
    assert config.vision_config._attn_implementation == "sdpa"


def test_picture_tokens_and_prompts_are_never_learned(demo, tokenizer):
    vision = VisionTokens.of(tokenizer)
    for example in demo[:-1]:
        learned = [label for label in example.labels if label != IGNORE_INDEX]
        assert not {vision.start, vision.pad, vision.end} & set(learned)
        # every learned token is an answer's: the assistant turns and their end, nothing of the prompts
        text = tokenizer.decode(learned)
        assert "<|im_start|>" not in text and "？" not in text and text.count("<|im_end|>") >= 1
    assert tokenizer.decode([t for t, label in zip(demo[0].input_ids, demo[0].labels) if label != IGNORE_INDEX]) == (
        "图中有3个蓝色的圆。<|im_end|>\n图中没有黄色的圆。<|im_end|>\n"
    )


def test_pictures_that_make_other_token_counts_than_the_data_side_are_a_bug_named(each_vl_model_dir, demo, pictures):
    model = _model(each_vl_model_dir)
    small = pictures.inputs(list(demo[0].images))[2]
    other = dataclasses.replace(pictures, max_pixels=28 * 28 * 4)  # fewer pixels: fewer tokens than were counted
    assert pictures.inputs(list(demo[0].images))[2] == small != other.inputs(list(demo[0].images))[2]
    losses = TokenLosses(model, device="cpu", packing=True, token_budget=10**6, batch_size=2, pictures=other)
    with pytest.raises(RuntimeError, match="01.png"):
        losses([demo[0]])


def _train(model_dir, demo, tmp_path, packing: bool) -> tuple[list[float], list[float]]:
    """A short LoRA run on the demo set, loaded as the worker loads it: (step losses, eval losses)."""
    from studio.training.loop import Trainer
    from studio.training.trainable import load_trainable_model

    training = TrainingConfig(
        learning_rate=1e-2,
        max_steps=6,
        batch_size=4,
        gradient_accumulation_steps=2,
        logging_steps=1,
        eval_steps=3,
        save_steps=1000,
        precision="fp32",
        gradient_checkpointing="off",
        packing=packing,
    )
    plan = resolve_plan(QuantizationConfig(method="none"), training, cuda=False)
    path = str(model_dir)
    torch.manual_seed(0)
    model = load_trainable_model(
        model=ModelConfig(name_or_path=path),
        quantization=QuantizationConfig(method="none"),
        training=training,
        lora=LoraConfig(),
        model_path=path,
        plan=plan,
    )
    losses, evals = [], []
    trainer = Trainer(
        model,
        train=demo[:36],
        val=demo[36:],
        config=training,
        lora=LoraConfig(),
        plan=plan,
        checkpoints_dir=tmp_path,
        emit=lambda e: losses.append(e.loss) if e.type == "step" else evals.append(e.eval_loss),
        abort=threading.Event(),
        pictures=TrainingPictures.of(ModelConfig(name_or_path=path), path),
    )
    trainer.run()
    return losses, [e for e in evals if e is not None]


def test_a_short_run_on_the_picture_demo_learns_packed_as_padded(each_vl_model_dir, demo, tmp_path):
    packed = _train(each_vl_model_dir, demo, tmp_path / "packed", packing=True)
    padded = _train(each_vl_model_dir, demo, tmp_path / "padded", packing=False)
    assert len(packed[0]) == 6 and len(packed[1]) == 2
    assert packed[0][-1] < packed[0][0] - 0.3 and packed[1][-1] < packed[1][0]
    for ours, reference in zip(packed[0] + packed[1], padded[0] + padded[1]):
        assert ours == pytest.approx(reference, abs=1e-4)
