"""A conversation's pictures as a vision-language model reads them: each `<image>` placeholder becomes
`<|vision_start|>`, one `<|image_pad|>` per merged patch of the picture, and `<|vision_end|>`.

As LLaMA-Factory's Qwen-VL plugin does it, the placeholder is replaced in the message text before the turn is
encoded, so the text around a picture is cut where LLaMA-Factory cuts it and the special tokens come out as their
single ids. A picture's count comes from the model's own image processor after scale_within with
model.image_min/max_pixels (vision.PictureProcessor, which the training side loads the same way to make the pixels), so
the two always agree. Picture tokens are never learned: their labels are IGNORE_INDEX wherever they stand.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from studio.data.registry import DataError
from studio.data.tokenize import IGNORE_INDEX, Encoded
from studio.modeling.vision import (
    PictureProcessor,
    VisionTokens,
    image_token_counts,
    pixel_inputs,
    vision_family,
    with_pictures,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from studio.config import ModelConfig
    from studio.data.formats import Message

# PictureProcessor.load's shape: (model folder, trust_remote_code, min_pixels, max_pixels) -> None for a text model
ProcessorLoader = Callable[[str, bool, int, int], PictureProcessor | None]
# the model's own words for pictures and videos: in a dataset's text they would become tokens without pixels
_VISION_WORDS = ("<|vision_start|>", "<|image_pad|>", "<|vision_end|>", "<|video_pad|>")


@dataclass
class PictureEncoder:
    """What tokenisation needs of a vision-language model: its image processor and the run's pixel bounds
    (studio.modeling.vision.PictureProcessor, shared with training), its vision token ids, and its name for errors.
    Counts are kept per picture: a dataset often shows one picture many times."""

    pictures: PictureProcessor
    tokens: VisionTokens
    model: str  # the model whose tokenizer this is, as the user named it
    _counts: dict[str, int] = field(default_factory=dict, repr=False)

    @classmethod
    def for_model(
        cls, tokenizer: PreTrainedTokenizerBase, model: ModelConfig, load: ProcessorLoader = PictureProcessor.load
    ) -> PictureEncoder | None:
        """For the vision-language model whose local folder the tokenizer was loaded from; None for a text model.
        `load`: how its image processor is loaded (a caller that keeps processors passes its cache)."""
        path = tokenizer.name_or_path
        bounds = (model.image_min_pixels, model.image_max_pixels)
        pictures = load(path, model.trust_remote_code, *bounds) if path else None
        return None if pictures is None else cls.of(pictures, tokenizer, model.name_or_path)

    @classmethod
    def of(cls, pictures: PictureProcessor, tokenizer: PreTrainedTokenizerBase, model: str = "") -> PictureEncoder:
        """Over a processor already loaded; `model` as the user named it (by default the tokenizer's folder)."""
        return cls(pictures, VisionTokens.of(tokenizer), model or Path(tokenizer.name_or_path or "?").name)

    def count(self, path: str) -> int:
        """How many <|image_pad|> tokens the picture in `path` becomes."""
        if path not in self._counts:
            try:
                picture = self.pictures.open(path)
            except Exception as error:  # checked when read, yet changed since or not decodable past its header
                raise DataError("data.picture_file_unreadable", path=path, error=error) from None
            processor = self.pictures.processor
            grid = pixel_inputs(processor, [picture])["image_grid_thw"]
            (self._counts[path],) = image_token_counts(processor, grid)
        return self._counts[path]

    def expand(self, messages: list[Message]) -> list[Message]:
        """The messages with each placeholder of a turn that shows pictures replaced by its picture's tokens."""
        if word := vision_word(messages):
            raise DataError("data.picture_tokens_in_text", token=word)
        return [self._expanded(message) if message.get("images") else message for message in messages]

    def _expanded(self, message: Message) -> Message:
        counts = [self.count(path) for path in message["images"]]
        return {**message, "content": with_pictures(message["content"], counts)}

    def finish(self, encoded: Encoded, pictures: list[str]) -> Encoded | None:
        """The encoded conversation with its picture tokens unlearned and its pictures listed; None when truncation
        cut into its pictures (tokens left without their pixels, or pixels without their tokens)."""
        vision = {self.tokens.start, self.tokens.pad, self.tokens.end}
        ids = encoded.input_ids
        whole = ids.count(self.tokens.start) == ids.count(self.tokens.end) == len(pictures)
        if not (whole and ids.count(self.tokens.pad) == sum(self.count(path) for path in pictures)):
            if encoded.truncated:
                return None
            raise DataError("data.tokenizer_splits_vision_tokens", model=self.model)
        labels = [IGNORE_INDEX if token in vision else label for token, label in zip(ids, encoded.labels)]
        return Encoded(ids, labels, encoded.truncated, tuple(pictures))


def vision_word(messages: list[Message]) -> str | None:
    """The first of the model's own words for pictures written in the turns' text (chat refuses them too), or None."""
    return next((word for message in messages for word in _VISION_WORDS if word in message["content"]), None)


def vision_model(model: ModelConfig) -> bool | None:
    """Whether `model` reads pictures, as far as is known before it is downloaded: its config.json when on this
    machine, else its name (Qwen2-VL-..., ...-VL-...); None when neither tells."""
    from studio.config.names import model_source
    from studio.memory_estimate import local_config_dir

    if model_source(model.name_or_path).kind == "embedded":
        return False
    folder = local_config_dir(model)
    if folder is not None:
        return vision_family(folder) is not None
    return True if re.search(r"(^|[-_])vl([-_]|$)", Path(model.name_or_path).name.lower()) else None
