"""Answers watched during training: a few prompts answered greedily at every evaluation step, by the training
worker's own model (no second load), so a person sees behaviour change, not only a loss.

The prompts are evaluation.watch_prompts, or the first evaluation.watch_count validation examples (a
conversation's question, a pair's prompt); answers are bounded by evaluation.watch_max_new_tokens. The model
decodes as the RL stages sample (sampling_mode: dropout off, padding-aware attention, adapter folded where the
weights are not quantised). Rank 0 alone watches; a sharded (FSDP) model is not watched, since decoding on one
rank would wait for the others' shards.
A vision-language run watches its validation prompts with their pictures: each such prompt is answered alone
through the model's own generate, which computes the 3-D rotary positions pictures need.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

import torch

from studio.config import EvaluationConfig, GenerationConfig
from studio.data.examples import FeedbackExample, PairwiseExample
from studio.data.formats import Message
from studio.data.pictures import conversation_pictures
from studio.data.tokenize_kinds import EncodedPrompt, encode_prompt
from studio.modeling.chat_templates import stop_ids
from studio.modeling.decode import decode, generated, left_padded
from studio.modeling.vision import multimodal_token_types
from studio.runs.events import Watched, WatchedRow
from studio.training.reinforce import sampling_mode

if TYPE_CHECKING:
    from studio.data.picture_tokens import PictureEncoder
    from studio.training.pictures import TrainingPictures


class Watcher:
    def __init__(
        self,
        tokenizer: Any,
        prompts: list[EncodedPrompt],
        max_new_tokens: int,
        shown: list[list[str]] | None = None,
        pictures: TrainingPictures | None = None,
    ):
        """`shown`: each prompt's pictures (none for a text run); `pictures`: how they become pixel inputs."""
        self.tokenizer, self.prompts, self.pictures = tokenizer, prompts, pictures
        self.shown = shown or [[] for _ in prompts]
        self._picture_rows = [i for i, paths in enumerate(self.shown) if paths]
        self.generation = GenerationConfig(temperature=0.0, max_new_tokens=max_new_tokens, repetition_penalty=1.0)

    @classmethod
    def of(
        cls,
        tokenizer: Any,
        config: EvaluationConfig,
        validation: list,
        cutoff_len: int,
        pictures: TrainingPictures | None = None,
        encoder: PictureEncoder | None = None,
    ) -> Watcher | None:
        """The watcher the config asks for, or None when there is nothing to watch. `pictures`: a vision-language
        model's, which prompts that show pictures need (without them those prompts are not watched); `encoder`: the
        run's tokenisation of them, which has counted the validation pictures' tokens already (else a new one)."""
        conversations = (
            [[{"role": "user", "content": text}, {"role": "assistant", "content": ""}] for text in config.watch_prompts]
            if config.watch_prompts
            else [c for c in map(_conversation, validation) if c][: config.watch_count]
        )
        encoder = None if pictures is None else encoder or pictures.encoder(tokenizer)
        prompts, shown = [], []
        for conversation in conversations:
            prompt, paths = _prompt(tokenizer, conversation, cutoff_len, encoder)
            if prompt is not None:
                prompts.append(prompt)
                shown.append(paths)
        return cls(tokenizer, prompts, config.watch_max_new_tokens, shown, pictures) if prompts else None

    def answer(
        self, model: Any, step: int, device: str, compute: Callable[[], AbstractContextManager] = nullcontext
    ) -> Watched:
        """The prompts' answers now; `compute`: the trainer's compute context (its autocast)."""
        started = time.perf_counter()
        stops = stop_ids(model, self.tokenizer)
        plain = [i for i, paths in enumerate(self.shown) if not paths]
        answers: dict[int, list[int]] = {}
        with sampling_mode(model), torch.no_grad(), compute():
            if plain:
                ids, mask = left_padded([self.prompts[i].prompt for i in plain], self.tokenizer.pad_token_id or 0)
                answers |= zip(plain, decode(model, ids.to(device), mask.to(device), self.generation, stops))
            if self._picture_rows:
                answers |= zip(self._picture_rows, self._with_pictures(model, device, stops))
        rows = [
            WatchedRow(
                prompt=(prompt.question or self.tokenizer.decode(prompt.prompt))[-400:],
                answer=self.tokenizer.decode(tokens, skip_special_tokens=True)[:2000],
                reference=prompt.reference[:400] or None,
            )
            for prompt, tokens in zip(self.prompts, (answers[i] for i in range(len(self.prompts))))
        ]
        return Watched(step=step, rows=rows, seconds=round(time.perf_counter() - started, 2))

    @functools.cached_property
    def _picture_inputs(self) -> dict[str, torch.Tensor]:
        """The prompts that show pictures, left-padded, with their pictures' pixels: the same at every evaluation,
        so the pictures are opened and processed once (at the first)."""
        assert self.pictures is not None  # prompts with pictures are kept only with them (of)
        rows = self._picture_rows
        pixels, grid, _ = self.pictures.inputs([path for row in rows for path in self.shown[row]])
        ids, mask = left_padded([self.prompts[row].prompt for row in rows], self.tokenizer.pad_token_id or 0)
        return {"input_ids": ids, "attention_mask": mask, "pixel_values": pixels, "image_grid_thw": grid}

    def _with_pictures(self, model: Any, device: str, stops: set[int]) -> list[list[int]]:
        """Greedy answers of the prompts that show pictures, left-padded into one call of the model's own generate
        (studio.modeling.decode.generated)."""
        inputs = {name: tensor.to(device) for name, tensor in self._picture_inputs.items()}
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        inputs["mm_token_type_ids"] = multimodal_token_types(inputs["input_ids"], base.config.image_token_id)
        pad = self.tokenizer.pad_token_id
        return generated(model, inputs, stops, self.generation.max_new_tokens, pad, do_sample=False)


def _prompt(
    tokenizer: Any, conversation: list[Message], cutoff_len: int, encoder: PictureEncoder | None
) -> tuple[EncodedPrompt | None, list[str]]:
    """A conversation's prompt and its pictures: their placeholders expanded into the pictures' tokens as training
    encodes them (`encoder`); None when it shows pictures the run cannot show, or truncation cut into them."""
    paths = conversation_pictures(conversation)
    if not paths:
        return encode_prompt(tokenizer, conversation, cutoff_len), []
    if encoder is None:
        return None, []
    question = next((str(m["content"]) for m in reversed(conversation) if m["role"] == "user"), "")
    prompt = encode_prompt(tokenizer, encoder.expand(conversation), cutoff_len)
    if prompt is None or prompt.truncated:
        return None, []
    return dataclasses.replace(prompt, question=question), paths


def _conversation(example: Any) -> list[Message] | None:
    """A validation example as a conversation ending in its answer, or None (plain text has no prompt)."""
    if isinstance(example, PairwiseExample):
        return [*example.prompt, example.chosen]
    if isinstance(example, FeedbackExample):
        return example.messages
    if isinstance(example, list) and example and isinstance(example[-1], dict):
        return example
    return None
