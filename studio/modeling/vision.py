"""What the studio knows of vision-language models: which folders hold one, their image processor, and pictures
turned into the model's inputs.

A picture is first scaled into [model.image_min_pixels, model.image_max_pixels] as LLaMA-Factory scales it, then
the model's own image processor resizes it to whole patches; the number of image tokens follows from the patch
grid it returns. Training, chat, evaluation and export all go through these functions, so a picture becomes the
same tokens everywhere.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image
    from transformers import PreTrainedTokenizerBase
    from typing_extensions import Self  # typing.Self is Python 3.11's; the studio runs on 3.10 too

    from studio.config import ModelConfig

# model_type in config.json of the families whose classes and processors transformers ships
VISION_FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe")
IMAGE_PLACEHOLDER = "<image>"  # LLaMA-Factory's placeholder in dataset text
MAX_SIDE_RATIO = 200  # Qwen's processors refuse a picture whose long side is more than 200 times its short one
# The most pixels a picture handed in (a Chat upload, an endpoint's image part) is decoded at: the studio's own bound,
# as PIL's Image.MAX_IMAGE_PIXELS is one setting for the whole process that another library may set to None. 40 MP
# is above a full-frame camera's 24-36 MP and an A4 page scanned at 600 dpi (35 MP) while one decoded RGB picture
# stays near 120 MB; a larger JPEG (a phone's 48-50 MP mode) is decoded at half scale or less (open_within's draft).
# Training data's pictures are read as LLaMA-Factory reads them, under PIL's own limit (open_scaled).
MAX_DECODED_PIXELS = 40 * 10**6
# The formats a picture handed in may be (open_within): PIL's other readers stay shut to uploads and image parts,
# EPS above all, which PIL renders by running Ghostscript on the file
HANDED_IN_FORMATS = ("PNG", "JPEG", "WEBP", "GIF")
# PIL's readers that run a program of their own on the file (EPS: Ghostscript): shut to datasets' pictures too, which
# may come from an upload; every other format PIL reads stays open to them, as LLaMA-Factory opens any
RUNS_A_PROGRAM = ("EPS",)


def dataset_formats() -> tuple[str, ...]:
    """The formats a dataset's picture may be: all PIL reads but RUNS_A_PROGRAM."""
    from PIL import Image

    Image.init()  # every reader registered, as Image.open would
    return tuple(name for name in Image.OPEN if name not in RUNS_A_PROGRAM)


def vision_family(model_path: str | Path) -> str | None:
    """The vision-language family of the model in `model_path` (a local folder), or None for a text model."""
    config = Path(model_path) / "config.json"
    if not config.is_file():
        return None
    model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    return model_type if model_type in VISION_FAMILIES else None


@dataclass(frozen=True)
class VisionTokens:
    """The special tokens a Qwen-VL prompt wraps each picture in, as ids of the tokenizer."""

    start: int
    pad: int  # repeated once per merged patch
    end: int

    @classmethod
    def of(cls, tokenizer: PreTrainedTokenizerBase) -> VisionTokens:
        ids = [tokenizer.convert_tokens_to_ids(t) for t in ("<|vision_start|>", "<|image_pad|>", "<|vision_end|>")]
        return cls(*(int(i) for i in ids))  # type: ignore[arg-type]  # one token in, one id out


def load_image_processor(model_path: str | Path, trust_remote_code: bool = False) -> Any:
    from transformers import AutoImageProcessor

    return AutoImageProcessor.from_pretrained(str(model_path), trust_remote_code=trust_remote_code)


@dataclass(frozen=True)
class PictureProcessor:
    """A vision-language model's image processor and the run's pixel bounds (model.image_min/max_pixels): what
    turns a picture into pixel inputs and image token counts. Tokenisation (studio.data.picture_tokens), training,
    chat and export all load it here, so a picture is scaled and cut into patches the same way everywhere."""

    processor: Any
    min_pixels: int
    max_pixels: int

    @classmethod
    def of(cls, config: ModelConfig, model_path: str | Path) -> Self | None:
        """For the vision-language model in `model_path` (a local folder), else None."""
        return cls.load(model_path, config.trust_remote_code, config.image_min_pixels, config.image_max_pixels)

    @classmethod
    def load(cls, model_path: str | Path, trust_remote_code: bool, min_pixels: int, max_pixels: int) -> Self | None:
        """`of` by its parts (what a cache of processors keys on); None for a text model."""
        if not vision_family(model_path):
            return None
        return cls(load_image_processor(model_path, trust_remote_code), min_pixels, max_pixels)

    @property
    def pixels(self) -> tuple[int, int]:
        return self.min_pixels, self.max_pixels

    def open(self, path: str | Path) -> Image:
        """The picture in the file `path`, scaled into the bounds (open_scaled)."""
        return open_scaled(path, self.min_pixels, self.max_pixels)

    def inputs(self, paths: list[str]) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """pixel_values, image_grid_thw and each picture's token count, in the order of `paths`."""
        inputs = pixel_inputs(self.processor, [self.open(path) for path in paths])
        grid = inputs["image_grid_thw"]
        return inputs["pixel_values"], grid, image_token_counts(self.processor, grid)

    def save(self, folder: str | Path) -> None:
        """preprocessor_config.json beside a saved adapter or model, where chat and export look for it."""
        self.processor.save_pretrained(str(folder))


def scale_within(image: Image, min_pixels: int, max_pixels: int) -> Image:
    """The picture scaled (keeping its aspect) to at most `max_pixels` and at least `min_pixels` pixels, in RGB,
    as LLaMA-Factory prepares a picture before the processor sees it."""
    pixels = image.width * image.height
    if pixels > max_pixels or pixels < min_pixels:
        image = image.resize(scaled_size(image.width, image.height, max_pixels if pixels > max_pixels else min_pixels))
    image = image if image.mode == "RGB" else image.convert("RGB")
    # LLaMA-Factory's Qwen-VL plugin (every family here) then widens a side under one 28-pixel patch pair and
    # cuts a strip longer than 200:1 to 180:1, which Qwen's own resizing refuses
    if min(image.width, image.height) < 28:
        image = image.resize((max(image.width, 28), max(image.height, 28)))
    if image.width / image.height > MAX_SIDE_RATIO:
        image = image.resize((image.height * 180, image.height))
    if image.height / image.width > MAX_SIDE_RATIO:
        image = image.resize((image.width, image.width * 180))
    return image


def scaled_size(width: int, height: int, pixels: int) -> tuple[int, int]:
    """A picture's size scaled (keeping its aspect) to `pixels` pixels, as LLaMA-Factory rounds it (down), but never
    a side under 1 pixel: LLaMA-Factory's rounding makes a 600000x1 strip 0 pixels high, which PIL refuses. A side
    held at 1 leaves the other what the bound allows; any other size is LLaMA-Factory's, already within it."""
    factor = math.sqrt(pixels / (width * height))
    wide, high = max(1, int(width * factor)), max(1, int(height * factor))
    return min(wide, max(1, pixels // high)), min(high, max(1, pixels // wide))


def too_long(width: int, height: int) -> bool:
    """Sides further apart than Qwen's processors take (its smart_resize refuses more than 200:1)."""
    return max(width, height) > MAX_SIDE_RATIO * min(width, height)


class PictureRefused(Exception):
    """A picture handed in (open_within) refused by its size, before its pixels are decoded."""

    def __init__(self, width: int, height: int) -> None:
        super().__init__(f"{width}x{height}")
        self.width, self.height = width, height


class PictureTooLong(PictureRefused):
    """Its sides are more than MAX_SIDE_RATIO apart."""


class PictureTooLarge(PictureRefused):
    """It decodes to more than MAX_DECODED_PIXELS pixels."""


def open_within(source: str | Path | IO[bytes], max_pixels: int) -> Image:
    """A picture handed in (a Chat upload, an endpoint's image part) decoded and, when larger, scaled down to
    `max_pixels` as scale_within scales it; refused before a pixel is decoded when it is none of HANDED_IN_FORMATS
    (PIL's UnidentifiedImageError), its sides are too far apart (PictureTooLong) or it would decode to more than
    MAX_DECODED_PIXELS (PictureTooLarge). A JPEG larger than that is decoded at a reduced scale where its scaled
    size allows (PIL's draft), then brought to that size."""
    from PIL import Image

    with Image.open(source, formats=HANDED_IN_FORMATS) as image:  # the header only: size and format
        width, height = image.size
        if too_long(width, height):
            raise PictureTooLong(width, height)
        size = scaled_size(width, height, max_pixels) if width * height > max_pixels else image.size
        if width * height > MAX_DECODED_PIXELS:
            # only then: a picture within the bound is decoded whole, its pixels as training's (open_scaled)
            image.draft(None, size)  # a JPEG's decoder scales by 1/2, 1/4 or 1/8 on the way; others ignore it
            if image.width * image.height > MAX_DECODED_PIXELS:
                raise PictureTooLarge(width, height)
        image.load()
        return image.resize(size) if image.size != size else image


def pixel_inputs(processor: Any, images: list[Image]) -> dict[str, torch.Tensor]:
    """pixel_values and image_grid_thw of `images` (already scaled) for the model's forward pass."""
    return dict(processor(images=images, return_tensors="pt"))


def image_token_counts(processor: Any, grid_thw: torch.Tensor) -> list[int]:
    """How many <|image_pad|> tokens each picture becomes: its patch grid divided by the merge of patches."""
    merge = getattr(processor, "merge_size", 2) ** 2
    return [int(row.prod()) // merge for row in grid_thw]


def multimodal_token_types(input_ids: torch.Tensor, image_token_id: int) -> torch.Tensor:
    """transformers' mm_token_type_ids for Qwen-VL's 3-D rotary positions: 1 at image tokens, 0 elsewhere."""
    return (input_ids == image_token_id).long()


def vision_text(count: int) -> str:
    """What one picture's placeholder becomes in a Qwen-VL prompt's text: its vision tokens as the tokenizer's
    special words (each encodes to its single id)."""
    return "<|vision_start|>" + "<|image_pad|>" * count + "<|vision_end|>"


def with_pictures(text: str, counts: list[int]) -> str:
    """`text` with its `<image>` placeholders, in order, replaced by pictures of `counts` tokens (as many as
    placeholders), the way LLaMA-Factory's Qwen-VL plugin rewrites a turn before encoding it."""
    parts = text.split(IMAGE_PLACEHOLDER)
    return parts[0] + "".join(vision_text(count) + part for count, part in zip(counts, parts[1:], strict=True))


def picture_prompt(
    tokenizer: PreTrainedTokenizerBase, processor: Any, text: str, image: Image, pixels: tuple[int, int]
) -> dict[str, torch.Tensor]:
    """The model's inputs for one user turn that shows `image` before `text`, rendered by the tokenizer's chat
    template with the picture's vision tokens in place: what the export check and a quick probe feed the model."""
    import torch

    inputs = pixel_inputs(processor, [scale_within(image, *pixels)])
    tokens = VisionTokens.of(tokenizer)
    (count,) = image_token_counts(processor, inputs["image_grid_thw"])
    rendered: str = tokenizer.apply_chat_template(  # type: ignore[assignment]  # tokenize=False: the text
        [{"role": "user", "content": "\x00" + text}], tokenize=False, add_generation_prompt=True
    )
    before, after = rendered.split("\x00")
    ids = (
        tokenizer(before, add_special_tokens=False)["input_ids"]
        + [tokens.start, *[tokens.pad] * count, tokens.end]
        + tokenizer(after, add_special_tokens=False)["input_ids"]
    )
    input_ids = torch.tensor([ids])
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "mm_token_type_ids": multimodal_token_types(input_ids, tokens.pad),
        **inputs,
    }


def check_picture() -> Image:
    """A fixed picture (a red disc and a blue square on white) for checks that need one."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (96, 64), "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse((8, 8, 48, 48), fill="red")
    draw.rectangle((56, 16, 88, 48), fill="blue")
    return image


def open_scaled(path: str | Path, min_pixels: int, max_pixels: int) -> Image:
    """The picture in the file `path`, read whole and scaled as `scale_within`: how training data's pictures are
    opened on both sides (their token counts at tokenisation, their pixels in the batch), so the two agree."""
    from PIL import Image

    with Image.open(path, formats=dataset_formats()) as image:
        image.load()
        return scale_within(image, min_pixels, max_pixels)
