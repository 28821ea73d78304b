"""Pictures scaled as LLaMA-Factory scales them, never to a side under one pixel, and pictures handed in (Chat's
uploads, the endpoint's parts) opened within the studio's own bounds, whatever PIL's process-wide limit is set to."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageFile

from studio.modeling.vision import (
    MAX_DECODED_PIXELS,
    PictureTooLarge,
    PictureTooLong,
    open_within,
    scale_within,
    scaled_size,
)

BOUNDS = (32 * 32, 768 * 768)  # model.image_min_pixels and image_max_pixels' defaults


def _encoded(image: Image.Image, kind: str = "PNG") -> io.BytesIO:
    buffer = io.BytesIO()
    image.save(buffer, kind)
    buffer.seek(0)
    return buffer


def test_a_thin_strip_is_scaled_to_at_least_one_pixel_then_as_llama_factory_cuts_it():
    # LLaMA-Factory's rounding would make these 0 pixels thin, which PIL refuses ("height and width must be > 0")
    wide, thin = scaled_size(600_000, 1, BOUNDS[1])
    assert (wide, thin) == (BOUNDS[1], 1)  # the whole bound, as thin as it can be
    assert scaled_size(1, 20_000_000, BOUNDS[1])[0] == 1
    assert scale_within(Image.new("L", (600_000, 1)), *BOUNDS).size == (28 * 180, 28)  # widened, then cut to 180:1
    assert scale_within(Image.new("L", (1, 600_000)), *BOUNDS).size == (28, 28 * 180)
    assert scale_within(Image.new("L", (2_000_000, 1)), 16, 10_000).size == (28 * 180, 28)
    # a picture whose sides stay whole scales as before: LLaMA-Factory's sizes, token for token
    assert scale_within(Image.new("RGB", (1600, 1200)), *BOUNDS).size == (886, 665)
    assert scale_within(Image.new("RGB", (300, 10)), *BOUNDS).size == (300, 28)


class Decoded(Exception):
    """Raised by a file's decoding (ImageFile.load) where a test says no pixel may be decoded."""


def _refuse_decoding(*_args, **_kwargs):
    raise Decoded


def test_a_picture_handed_in_is_refused_by_its_header_before_its_pixels_are_decoded(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # as another library may set it: no limit of PIL's
    sent = {size: _encoded(Image.new("1", size)) for size in ((600_000, 1), (1, 20_000_000), (201, 1), (200, 1))}
    bomb = _encoded(Image.new("1", (7_000, 7_000)))  # 49 million pixels in a few kB of PNG
    with monkeypatch.context() as decoding:
        # these strips are small decoded: only a decoder that raises proves the refusal came from the header
        decoding.setattr(ImageFile.ImageFile, "load", _refuse_decoding)
        for size in ((600_000, 1), (1, 20_000_000), (201, 1)):
            with pytest.raises(PictureTooLong) as refused:
                open_within(sent[size], BOUNDS[1])
            assert (refused.value.width, refused.value.height) == size
        with pytest.raises(PictureTooLarge):
            open_within(bomb, BOUNDS[1])
        with pytest.raises(Decoded):  # a picture taken is decoded: the tripwire is where decoding happens
            open_within(sent[200, 1], BOUNDS[1])
    sent[200, 1].seek(0)
    assert open_within(sent[200, 1], BOUNDS[1]).size == (200, 1)


def test_a_jpeg_over_the_bound_is_decoded_at_a_reduced_scale_to_its_scaled_size():
    large = Image.new("RGB", (8_000, 6_000), "red")  # 48 MP, a phone's high-resolution mode
    assert large.width * large.height > MAX_DECODED_PIXELS
    opened = open_within(_encoded(large, "JPEG"), BOUNDS[1])
    assert opened.size == scaled_size(8_000, 6_000, BOUNDS[1]) == (886, 665)
    assert opened.getpixel((400, 300))[0] > 240  # still the red picture
    with pytest.raises(PictureTooLarge):  # a PNG has no reduced decoding
        open_within(_encoded(Image.new("1", (8_000, 6_000)), "PNG"), BOUNDS[1])


def test_a_picture_within_the_bounds_is_decoded_whole_as_training_decodes_it(tmp_path):
    picture = Image.radial_gradient("L").convert("RGB").resize((1600, 1200))
    path = tmp_path / "gradient.jpg"
    picture.save(path, quality=95)
    with Image.open(path) as whole:
        training = scale_within(whole, *BOUNDS)
    handed_in = scale_within(open_within(path, BOUNDS[1]), *BOUNDS)
    assert handed_in.size == training.size and handed_in.tobytes() == training.tobytes()
