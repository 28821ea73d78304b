"""Pictures in a chat with a vision-language model: each `<image>` of a conversation becomes the picture's vision
tokens, and the pictures the model's pixel inputs.

A conversation's pictures are listed in the order of their `<image>` placeholders (LLaMA-Factory's convention, as in
training data). Each placeholder is replaced by the text of `<|vision_start|>`, one `<|image_pad|>` per merged patch,
and `<|vision_end|>` before the prompt is encoded, so the prompt goes through the same encoding as a text one and
the special tokens come out as their single ids. Rows of one batch concatenate their pictures in row order, which is
the order the model scatters image features back into the image tokens.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from studio.data.picture_tokens import vision_word
from studio.data.pictures import conversation_pictures, placeholders
from studio.errors import StudioError
from studio.modeling.vision import (
    MAX_DECODED_PIXELS,
    PictureTooLarge,
    PictureTooLong,
    image_token_counts,
    multimodal_token_types,
    open_scaled,
    open_within,
    pixel_inputs,
    scale_within,
    too_long,
    with_pictures,
)
from studio.training.pictures import TrainingPictures

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image

    from studio.config import ModelConfig
    from studio.data.formats import Message
    from studio.data.tokenize import Encoded


@dataclass(frozen=True)
class Carried:
    """A picture a dataset row carries (Evaluate's samples), read as training reads it (open_scaled): what the model
    was trained on is what it answers about, without the bounds put on pictures handed in."""

    path: str | Path


@dataclass(frozen=True)
class Checked:
    """A picture handed in that open_within already opened and checked at its sent size (the endpoint's image
    parts): scaled as training scales it without a second check. Its sides as open_within rounded them down may be
    a little over 200:1 apart where the sent ones were not; scale_within squeezes such a strip as training does."""

    image: Image


# a picture in memory, the path of one the page already checked, one a dataset row carries, or one already opened
Picture = Union["Image", str, Path, Carried, Checked]


class PictureError(StudioError):
    """A picture the chat cannot use: a text model, a wrong count of placeholders, an unreadable file."""


@dataclass
class ChatPictures:
    """How the loaded vision-language model sees pictures: as training does (its image processor and the pixel
    bounds, studio.training.pictures), and where its image tokens are."""

    training: TrainingPictures
    image_token_id: int

    @classmethod
    def of(cls, config: ModelConfig, model_path: str, model: Any) -> ChatPictures | None:
        """For a vision-language model, else None."""
        training = TrainingPictures.of(config, model_path)
        return None if training is None else cls(training, model.config.image_token_id)

    @property
    def processor(self) -> Any:
        return self.training.processor

    @property
    def pixels(self) -> tuple[int, int]:
        return self.training.min_pixels, self.training.max_pixels

    def expand(
        self, conversations: list[list[Message]], pictures: list[list[Picture]]
    ) -> tuple[list[list[Message]], dict[str, torch.Tensor]]:
        """The conversations with their placeholders expanded, and the pixel inputs of all their pictures. As in
        training data (studio.data.pictures), a system turn's `<image>` is its text, not a picture's place."""
        opened = [[_opened(picture, self.pixels, n) for n, picture in enumerate(row, 1)] for row in pictures]
        flat = [image for row in opened for image in row]
        if not flat:
            return conversations, {}
        inputs = pixel_inputs(self.processor, flat)
        counts = iter(image_token_counts(self.processor, inputs["image_grid_thw"]))
        expanded = [_expanded(c, len(row), counts) for c, row in zip(conversations, opened)]
        return expanded, inputs

    def token_types(self, input_ids: torch.Tensor) -> torch.Tensor:
        return multimodal_token_types(input_ids, self.image_token_id)

    def scored_inputs(self, examples: list[Encoded], input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """The pixel inputs and token types of encoded examples (their `images`, row by row), for a loss."""
        paths = [path for example in examples for path in example.images]
        if not paths:
            return {}
        pixel_values, grid, _ = self.training.inputs(paths)
        return {"pixel_values": pixel_values, "image_grid_thw": grid, "mm_token_type_ids": self.token_types(input_ids)}


def carried(conversations: list[list[Message]]) -> list[list[Picture]] | None:
    """The pictures each conversation's turns carry (`images`, as dataset rows and evaluation samples hold them),
    in order; None when no turn carries any."""
    pictures: list[list[Picture]] = [[Carried(path) for path in conversation_pictures(c)] for c in conversations]
    return pictures if any(pictures) else None


def check_text(conversations: list[list[Message]]) -> None:
    """Refuse the model's own words for pictures (<|image_pad|>, ...) written in a turn, as training data refuses
    them (studio.data.picture_tokens): they would reach a vision-language model as image tokens without pixels."""
    for conversation in conversations:
        if word := vision_word(conversation):
            raise PictureError("chat.picture_tokens_in_text", token=word)


def _opened(picture: Picture, pixels: tuple[int, int], position: int) -> Image:
    """The picture scaled as training scales it. One handed in (a file the page checked, or one in memory) is opened
    within the studio's bounds (open_within: PNG, JPEG, WebP or GIF only) and refused by name when its sides are more
    than 200:1 apart (Qwen's rule, rather than LLaMA-Factory's squeeze of such a strip to 180:1); one open_within
    already checked (Checked) is only scaled; one a dataset row carries is read exactly as training read it. A picture
    is named by its file's name, one in memory by its place among the conversation's."""
    from PIL import Image, UnidentifiedImageError

    low, high = pixels
    if isinstance(picture, Carried):
        try:
            return open_scaled(picture.path, low, high)
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
            raise PictureError("chat.picture_unreadable", name=Path(picture.path).name, error=error) from None
    if isinstance(picture, Checked):
        return scale_within(picture.image, low, high)
    if not isinstance(picture, (str, Path)):
        if too_long(picture.width, picture.height):
            width, height = picture.size
            raise PictureError("chat.picture_too_long", name=f"#{position}", width=width, height=height)
        return scale_within(picture, low, high)
    name = Path(picture).name
    try:
        return scale_within(open_within(picture, high), low, high)
    except PictureTooLong as refused:
        raise PictureError("chat.picture_too_long", name=name, width=refused.width, height=refused.height) from None
    except (PictureTooLarge, Image.DecompressionBombError):
        raise PictureError("chat.picture_too_large", name=name, most=MAX_DECODED_PIXELS // 10**6) from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:  # PIL's damaged or foreign files
        raise PictureError("chat.picture_unreadable", name=name, error=error) from None


def _expanded(messages: list[Message], pictures: int, counts: Iterator[int]) -> list[Message]:
    shown = [placeholders(message) for message in messages]
    if sum(shown) != pictures:
        raise PictureError("chat.picture_count", placeholders=sum(shown), pictures=pictures)
    return [
        dict(message, content=with_pictures(message["content"], [next(counts) for _ in range(n)])) if n else message
        for message, n in zip(messages, shown)
    ]
