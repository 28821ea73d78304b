"""The forward pass of a vision-language model over examples with pictures, in either layout of `TokenLosses`.

An example's `images` are re-opened, scaled into [model.image_min_pixels, model.image_max_pixels] and put through the
model's image processor exactly as the data side did when it counted their tokens (studio.modeling.vision), so each
picture's features fill its `<|image_pad|>` tokens one for one; a mismatch is a bug and stops the run. The vision
tower encodes a micro-batch's pictures in one call; transformers' own model then scatters the features into the
input embeddings and runs the language model.

Qwen-VL's rotary positions are 3-D (text positions, and temporal/height/width positions over a picture's tokens). They
are computed per example with the model's own `get_rope_index`, so in a packed row each example's positions start
at 0 as they would alone; with attention kept inside each example (varlen_attention) a packed row computes what
padded rows and the model's own forward compute. Text-only examples get plain positions on all three axes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from studio.modeling.vision import PictureProcessor, multimodal_token_types

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from studio.data.picture_tokens import PictureEncoder
    from studio.data.tokenize import Labelled
    from studio.training.packing import Packed


def images_of(example: Labelled) -> tuple[str, ...]:
    """An example's pictures (`Encoded.images`); none for the kinds of example that carry no pictures."""
    return tuple(getattr(example, "images", ()))


class TrainingPictures(PictureProcessor):
    """How a run turns pictures into pixel inputs: the model's image processor and the run's pixel bounds
    (`TrainingPictures.of(config, model_path)`, None for a text model), loaded once for data, forward pass and save."""

    def encoder(self, tokenizer: PreTrainedTokenizerBase) -> PictureEncoder:
        """The data side's encoder over the same processor (tokenisation counts the tokens these pixels fill)."""
        from studio.data.picture_tokens import PictureEncoder

        return PictureEncoder.of(self, tokenizer)


class VisionForward:
    """Hidden states of a vision-language model (transformers' Qwen2VLModel and kin: vision tower, projector,
    language model) for a packed row or padded rows of examples that may carry pictures."""

    def __init__(self, base: Any, pictures: TrainingPictures, device: str):
        self.inner = base.model  # under the output layer: what takes ids, pictures and positions
        self.pictures, self.device = pictures, device
        self.image_token = int(base.config.image_token_id)

    def describe(self) -> str:
        return (
            "pictures through the vision tower once per micro-batch, 3-D rotary positions starting again with each "
            "example"
        )

    def packed(self, examples: list[Labelled], batch: Packed) -> torch.Tensor:
        """(T, hidden) of one packed row; `batch` is `pack(examples)`."""
        encoded, grids = self._encode(examples)
        positions = torch.cat([self._positions(e, g) for e, g in zip(examples, grids)], dim=1)
        cu_seqlens = batch.cu_seqlens.to(self.device)
        output = self.inner(
            input_ids=batch.input_ids.to(self.device, non_blocking=True),
            position_ids=positions[:, None].to(self.device, non_blocking=True),  # (3, 1, T)
            mm_encoder_outputs=encoded,
            use_cache=False,
            cu_seq_lens_q=cu_seqlens,
            cu_seq_lens_k=cu_seqlens,
            max_length_q=batch.max_length,
            max_length_k=batch.max_length,
        )
        return output.last_hidden_state[0]

    def padded(self, examples: list[Labelled], input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(rows x width, hidden) of right-padded rows."""
        encoded, grids = self._encode(examples)
        positions = torch.zeros((3, *input_ids.shape), dtype=torch.long)
        for row, (example, grid) in enumerate(zip(examples, grids)):
            positions[:, row, : len(example.input_ids)] = self._positions(example, grid)
        output = self.inner(
            input_ids=input_ids.to(self.device),
            attention_mask=mask.to(self.device),
            position_ids=positions.to(self.device),
            mm_encoder_outputs=encoded,
            use_cache=False,
        )
        return output.last_hidden_state.flatten(0, 1)

    def _encode(self, examples: list[Labelled]) -> tuple[dict[str, Any] | None, list[torch.Tensor | None]]:
        """The vision tower's output for every picture of `examples` (None without pictures), and each example's
        rows of image_grid_thw (None for one without pictures)."""
        paths = [path for example in examples for path in images_of(example)]
        if not paths:
            return None, [None] * len(examples)
        pixels, grid, counts = self.pictures.inputs(paths)
        grids: list[torch.Tensor | None] = []
        start = 0
        for example in examples:
            count = len(images_of(example))
            grids.append(grid[start : start + count] if count else None)
            self._check_tokens(example, counts[start : start + count])
            start += count
        features = self.inner.get_image_features(pixels.to(self.device), grid.to(self.device), return_dict=True)
        return {"image": features}, grids

    def _check_tokens(self, example: Labelled, counts: list[int]) -> None:
        found = sum(1 for token in example.input_ids if token == self.image_token)
        if found != sum(counts):
            shown = ", ".join(images_of(example))
            raise RuntimeError(
                f"An example has {found} image tokens but its pictures make {sum(counts)} ({shown}): the data side "
                "and the training side turned the pictures into different token counts."
            )

    def _positions(self, example: Labelled, grid: torch.Tensor | None) -> torch.Tensor:
        """(3, length): the example's rotary positions as if it were alone."""
        length = len(example.input_ids)
        if grid is None:
            return torch.arange(length).expand(3, length)
        ids = torch.tensor([example.input_ids])
        types = multimodal_token_types(ids, self.image_token)
        positions, _ = self.inner.get_rope_index(input_ids=ids, mm_token_type_ids=types, image_grid_thw=grid)
        return positions[:, 0]
