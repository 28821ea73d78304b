"""Watched prompts of a vision-language run are answered with their pictures: left-padded together they answer as
each does alone, and without the model's pictures a prompt that shows some is not watched as bare text."""

from __future__ import annotations

import pytest
import torch

from studio.config import DataConfig, EvaluationConfig, FinetuningConfig, LoraConfig, ModelConfig
from studio.training.pictures import TrainingPictures
from studio.training.watch import Watcher


@pytest.fixture(scope="module")
def setup(tiny_vl_model_dir):
    from transformers import AutoModelForImageTextToText

    from studio.data.prepare import load_conversations
    from studio.modeling.loader import load_tokenizer
    from studio.modeling.methods import attach_method

    path = str(tiny_vl_model_dir)
    tokenizer = load_tokenizer(ModelConfig(name_or_path=path), path)
    pictures = TrainingPictures.of(ModelConfig(name_or_path=path), path)
    torch.manual_seed(0)
    base = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32).requires_grad_(False)
    model = attach_method(base, FinetuningConfig(), LoraConfig())
    shapes = [c for d in load_conversations(DataConfig(datasets=["shapes_zh_demo"])) for c in d.examples]
    text = [c for d in load_conversations(DataConfig(datasets=["alpaca_zh_demo"], max_samples=1)) for c in d.examples]
    two = next(c for c in shapes if sum(len(m.get("images", ())) for m in c) == 2)
    return tokenizer, pictures, model, [shapes[0], text[0], two]


def _answers(watcher: Watcher, model) -> list[str]:
    return [row.answer for row in watcher.answer(model, step=1, device="cpu").rows]


def test_picture_prompts_answered_together_answer_as_each_does_alone(setup):
    tokenizer, pictures, model, conversations = setup
    config = EvaluationConfig(watch_count=3, watch_max_new_tokens=6)
    watcher = Watcher.of(tokenizer, config, conversations, 512, pictures)
    assert watcher is not None and [len(paths) for paths in watcher.shown] == [1, 0, 2]
    assert all("<|image_pad|>" not in prompt.question for prompt in watcher.prompts)  # shown as the user wrote it
    together = _answers(watcher, model)
    alone = [_answers(Watcher.of(tokenizer, config, [c], 512, pictures), model)[0] for c in conversations]
    assert together == alone and all(together)


def test_without_the_model_s_pictures_a_prompt_that_shows_some_is_not_watched(setup):
    tokenizer, _, _, conversations = setup
    watcher = Watcher.of(tokenizer, EvaluationConfig(watch_count=3), conversations, 512)
    assert watcher is not None and len(watcher.prompts) == 1 and watcher.shown == [[]]


def test_a_picture_prompt_stops_at_the_chat_format_s_end_token(setup):
    """The model's generation config names another end token than the chat format's <|im_end|>: the watched answer
    ends at its first step instead of running to watch_max_new_tokens."""
    from tests.support.end_tokens import ends_at_once

    tokenizer, pictures, model, conversations = setup
    config = EvaluationConfig(watch_count=1, watch_max_new_tokens=12)
    watcher = Watcher.of(tokenizer, config, conversations, 512, pictures, pictures.encoder(tokenizer))
    assert watcher is not None and watcher.shown[0]
    end, other = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|vision_end|>"])
    with ends_at_once(model, end, other) as steps:
        assert _answers(watcher, model) == [""]
    assert len(steps) == 1
