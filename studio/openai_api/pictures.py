"""Pictures in a chat request: OpenAI's image_url content parts, taken only as base64 data URLs and decoded in memory.

The server fetches nothing and opens nothing by name: an http(s) URL would make it a fetcher for whoever can call it
(and it runs offline), a path or file: URL a reader of its own disk. Either is refused with what to send instead.
A data URL's bytes are bounded before and after decoding, and its pixel count and shape are read from the header
and bounded before the pixels are decoded (studio.modeling.vision.open_within, Chat's bounds), so a small file
cannot unpack into gigabytes nor a strip of 600000x1 pixels reach the model. The picture then goes, as a PIL image,
the way Chat's pictures go (studio.chat.pictures.ChatPictures): scaled within the model's pixel bounds, one
`<image>` placeholder where its part was.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from studio.chat.pictures import ChatPictures, Checked, PictureError
from studio.chat.vllm_options import VllmRefused
from studio.modeling.vision import MAX_DECODED_PIXELS, PictureTooLarge, PictureTooLong, open_within
from studio.openai_api.errors import ApiError
from studio.openai_api.schema import ChatMessage, ContentPart

if TYPE_CHECKING:
    from PIL.Image import Image

    from studio.chat.engines import Engine

MAX_PICTURES = 16  # per request: each costs a decode of up to MAX_DECODED_PIXELS before it is scaled down
MAX_PICTURE_BYTES = 10 * 2**20  # one picture's bytes, decoded (a phone's JPEG is a few MiB)
LOW_DETAIL_PIXELS = 512 * 512  # detail "low": OpenAI's low-resolution picture, a few hundred tokens at most
_DATA_URL = re.compile(r"data:(image/[\w.+-]+);base64,", re.IGNORECASE)
_REMOTE = re.compile(r"(https?|ftp|ws|wss)://", re.IGNORECASE)


@dataclass(frozen=True)
class Shown:
    """One image_url part: where it is (for messages and `param`), its base64 data, its detail."""

    where: str  # messages[i].content[j]
    data: str
    detail: str | None

    def opened(self, pixels: tuple[int, int]) -> Checked:
        """The picture, decoded in memory; larger than the model's (or low detail's) pixel bound: scaled to it.
        Checked: its shape was judged at the size the client sent (open_within), and ChatPictures does not judge it
        again at the size scaled down here, whose short side, rounded down, may put it a little past 200:1."""
        _, high = pixels
        if self.detail == "low":
            high = min(high, LOW_DETAIL_PIXELS)
        # only a larger picture is scaled here: ChatPictures scales every one within bounds again, as Chat's own
        return Checked(_decoded(self.where, _bytes(self.where, self.data), high))


def shown_part(message: int, part: int, content: ContentPart, role: str) -> Shown:
    """An image_url part checked as far as it can be without decoding: a user's, and a base64 data URL."""
    where = f"messages[{message}].content[{part}]"
    if content.image_url is None:
        raise ApiError("openai.picture_no_url", param=where, where=where)
    if role != "user":
        raise ApiError("openai.picture_not_user", param=where, where=where, role=role)
    url = content.image_url.url.strip()
    if _REMOTE.match(url):
        raise ApiError("openai.picture_remote", param=f"{where}.image_url.url", where=where)
    if url.lower().startswith("file:") or url.startswith(("/", "\\", "~", ".")) or re.match(r"[A-Za-z]:[\\/]", url):
        raise ApiError("openai.picture_path", param=f"{where}.image_url.url", where=where)
    found = _DATA_URL.match(url)
    if found is None:
        raise ApiError("openai.picture_not_data", param=f"{where}.image_url.url", where=where)
    return Shown(where, url[found.end() :], content.image_url.detail)


def check_count(shown: list[Shown]) -> None:
    if len(shown) > MAX_PICTURES:
        raise ApiError("openai.too_many_pictures", param="messages", count=len(shown), most=MAX_PICTURES)


def model_pictures(engine: Engine) -> ChatPictures | None:
    """How the loaded model sees pictures: the HF engine's, for a vision-language model; None for any other."""
    from studio.chat.engine import ChatEngine

    return engine.pictures if isinstance(engine, ChatEngine) and engine.sees_pictures else None


def seeing(engine: Engine, model: str) -> ChatPictures:
    """How the engine's model sees pictures; refused by name (HTTP 400) where it cannot: vLLM (pictures go through
    the HF engine), a GGUF file (llama.cpp reads its text only here), a text model."""
    from studio.chat.vllm_engine import VllmEngine

    pictures = model_pictures(engine)
    if pictures is not None:
        return pictures
    if isinstance(engine, VllmEngine):
        raise VllmRefused("engines.vllm_no_pictures")
    if engine.base_only:  # a GGUF file, answered by llama.cpp, text only
        # the file's name, as the model list names it: a client elsewhere has no business with the server's paths
        raise ApiError("openai.pictures_gguf", param="messages", name=Path(engine.model_name or "").name)
    raise PictureError("chat.pictures_need_vision_model", model=model)


def messages_pictures(messages: list[ChatMessage]) -> list[Shown]:
    """Every image_url part of the request, in order, checked as `shown_part` checks one."""
    shown = [
        shown_part(index, position, part, message.role)
        for index, message in enumerate(messages)
        if isinstance(message.content, list)
        for position, part in enumerate(message.content)
        if part.type == "image_url"
    ]
    check_count(shown)
    return shown


def _bytes(where: str, data: str) -> bytes:
    # base64 is 4 characters per 3 bytes: a picture too large is refused before it is decoded
    if len(data) > (MAX_PICTURE_BYTES + 2) // 3 * 4 + 4:
        raise ApiError("openai.picture_too_large", param=where, where=where, most=MAX_PICTURE_BYTES // 2**20)
    try:
        raw = base64.b64decode("".join(data.split()), validate=True)  # line breaks allowed, nothing else
    except (binascii.Error, ValueError) as error:
        raise ApiError("openai.picture_bad_base64", param=where, where=where, error=error) from None
    if len(raw) > MAX_PICTURE_BYTES:
        raise ApiError("openai.picture_too_large", param=where, where=where, most=MAX_PICTURE_BYTES // 2**20)
    return raw


def _decoded(where: str, raw: bytes, max_pixels: int) -> Image:
    """The picture decoded within the studio's bounds (studio.modeling.vision.open_within) and scaled down to
    `max_pixels`; refused by its part's name where it cannot be."""
    from PIL import Image, UnidentifiedImageError

    try:
        return open_within(io.BytesIO(raw), max_pixels)
    except PictureTooLong as refused:
        width, height = refused.width, refused.height
        raise ApiError("openai.picture_too_long", param=where, where=where, width=width, height=height) from None
    except (PictureTooLarge, Image.DecompressionBombError):
        most = MAX_DECODED_PIXELS // 10**6
        raise ApiError("openai.picture_too_many_pixels", param=where, where=where, most=most) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ApiError("openai.picture_unreadable", param=where, where=where, error=error) from None
