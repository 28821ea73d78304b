"""A conversation's pictures as a vision-language model reads them: each `<image>` placeholder becomes
`<|vision_start|>`, one `<|image_pad|>` per merged patch of the picture, and `<|vision_end|>`.

As LLaMA-Factory's Qwen-VL plugin does it, the placeholder is replaced in the message text before the turn is
encoded, so the text around a picture is cut where LLaMA-Factory cuts it and the special tokens come out as their
single ids. A picture's count comes from the model's own image processor after scale_within with
model.image_min/max_pixels (vision.open_scaled), the calls the training side repeats to make the pixels, so the two
always agree. Picture tokens are never learned: their labels are IGNORE_INDEX wherever they stand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.data.registry import DataError
from studio.data.tokenize import IGNORE_INDEX, Encoded
from studio.modeling.vision import (
    VisionTokens,
    image_token_counts,
    load_image_processor,
    open_scaled,
    pixel_inputs,
    vision_family,
    with_pictures,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from studio.config import ModelConfig
    from studio.data.formats import Message

# the model's own words for pictures and videos: in a dataset's text they would become tokens without pixels
_VISION_WORDS = ("<|vision_start|>", "<|image_pad|>", "<|vision_end|>", "<|video_pad|>")


@dataclass
class PictureEncoder:
    """What tokenisation needs of a vision-language model: its image processor, its vision token ids and the
    run's pixel bounds. Counts are kept per picture: a dataset often shows one picture many times."""

    processor: Any
    tokens: VisionTokens
    min_pixels: int
    max_pixels: int
    _counts: dict[str, int] = field(default_factory=dict, repr=False)

    @classmethod
    def for_model(cls, tokenizer: PreTrainedTokenizerBase, model: ModelConfig) -> PictureEncoder | None:
        """For the vision-language model whose local folder the tokenizer was loaded from; None for a text model."""
        path = tokenizer.name_or_path
        if not path or not vision_family(path):
            return None
        processor = load_image_processor(path, model.trust_remote_code)
        return cls(processor, VisionTokens.of(tokenizer), model.image_min_pixels, model.image_max_pixels)

    def count(self, path: str) -> int:
        """How many <|image_pad|> tokens the picture in `path` becomes."""
        if path not in self._counts:
            try:
                picture = open_scaled(path, self.min_pixels, self.max_pixels)
            except Exception as error:  # checked when read, yet changed since or not decodable past its header
                raise DataError("data.picture_file_unreadable", path=path, error=error) from None
            grid = pixel_inputs(self.processor, [picture])["image_grid_thw"]
            (self._counts[path],) = image_token_counts(self.processor, grid)
        return self._counts[path]

    def expand(self, messages: list[Message]) -> list[Message]:
        """The messages with each placeholder of a turn that shows pictures replaced by its picture's tokens."""
        for message in messages:
            if word := next((w for w in _VISION_WORDS if w in message["content"]), None):
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
            raise DataError("data.picture_tokens_in_text", token="<|image_pad|>")  # the tokenizer split its words
        labels = [IGNORE_INDEX if token in vision else label for token, label in zip(ids, encoded.labels)]
        return Encoded(ids, labels, encoded.truncated, tuple(pictures))


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
