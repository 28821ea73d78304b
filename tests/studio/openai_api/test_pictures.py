"""Pictures sent to the endpoint as OpenAI's image_url parts, with OpenAI's own client: a vision-language model sees
them as Chat's engine does; anything but a base64 data URL of a picture is refused, and nothing is fetched or read
from disk by name; a strip thinner than 1:200 is refused by its part; `<image>` typed in a text part stays text."""

from __future__ import annotations

import base64
import contextlib
import http.server
import io
import os
import re
import sys
import threading
from pathlib import Path

import openai
import pytest
from PIL import Image, ImageDraw, ImageFile

from studio.chat import ChatEngine
from studio.config import ChatConfig, GenerationConfig, ModelConfig, QuantizationConfig
from studio.modeling.vision import image_token_counts
from studio.openai_api.endpoint import _as_api_error
from studio.openai_api.pictures import MAX_PICTURE_BYTES, seeing, shown_part
from studio.openai_api.prompts import chat_prompt
from studio.openai_api.schema import ChatRequest, ContentPart, ImageUrl
from tests.support import make_gguf, make_vision_adapter

GREEDY = GenerationConfig(temperature=0, max_new_tokens=8, repetition_penalty=1.0, top_k=0)
ASKED = "图中有几个圆？"


def _picture() -> Image.Image:
    image = Image.new("RGB", (80, 60), "white")
    ImageDraw.Draw(image).ellipse((10, 10, 50, 50), fill="red")
    return image


def _data_url(image: Image.Image, kind: str = "PNG") -> str:
    buffer = io.BytesIO()
    image.save(buffer, kind)
    return f"data:image/{kind.lower()};base64,{base64.b64encode(buffer.getvalue()).decode()}"


def _asking(url: str, **image_url) -> list[dict]:
    parts = [{"type": "image_url", "image_url": {"url": url, **image_url}}, {"type": "text", "text": ASKED}]
    return [{"role": "user", "content": parts}]


def _ask(client, model: str, messages: list[dict], **options):
    return client.chat.completions.create(
        model=model, messages=messages, **{"temperature": 0, "max_tokens": GREEDY.max_new_tokens, **options}
    )


@pytest.fixture(scope="module")
def vision_engine(tiny_vl_model_dir, tmp_path_factory):
    """The tiny vision-language model with an adapter whose random LoRA makes its greedy answers vary (the bare
    random model answers every prompt with the same newlines)."""
    adapter = make_vision_adapter(tiny_vl_model_dir, tmp_path_factory.mktemp("adapters") / "vision")
    engine = ChatEngine()
    engine.load(ModelConfig(name_or_path=str(tiny_vl_model_dir)), QuantizationConfig(method="none"))
    engine.load_adapter(str(adapter), "vision")
    yield engine
    engine.unload()


@pytest.fixture
def vision_api(serve_endpoint, vision_engine):
    return serve_endpoint(over=vision_engine)


def test_a_picture_is_seen_as_chat_sees_it_and_counted_in_the_prompt(vision_api, vision_engine):
    client = vision_api.client()
    seen = _ask(client, "vision", _asking(_data_url(_picture())))
    unseen = _ask(client, "vision", [{"role": "user", "content": ASKED}])
    asked = [{"role": "user", "content": "<image>" + ASKED}]
    *_, chat = vision_engine.stream([asked], ["vision"], GREEDY, pictures=[[_picture()]])
    assert seen.choices[0].message.content == chat[0].text  # the same picture path as Chat's, greedily
    assert seen.choices[0].message.content != unseen.choices[0].message.content
    # usage counts the picture as the model sees it: its image tokens between <|vision_start|> and <|vision_end|>
    _, pixels = vision_engine.pictures.expand([[{"role": "user", "content": "<image>"}]], [[_picture()]])
    (count,) = image_token_counts(vision_engine.pictures.processor, pixels["image_grid_thw"])
    assert seen.usage.prompt_tokens == unseen.usage.prompt_tokens + count + 2
    jpeg = _ask(client, "vision", _asking(_data_url(_picture(), "JPEG"), detail="high"))
    assert jpeg.usage.prompt_tokens == seen.usage.prompt_tokens  # any picture format, the same token count


def test_a_low_detail_picture_is_decoded_at_most_512_by_512():
    large = ContentPart(type="image_url", image_url=ImageUrl(url=_data_url(_picture().resize((1600, 1200)))))
    low = large.model_copy(update={"image_url": ImageUrl(url=large.image_url.url, detail="low")})
    bounds = (32 * 32, 768 * 768)  # model.image_min_pixels and image_max_pixels' defaults
    assert shown_part(0, 0, low, "user").opened(bounds).image.size == (591, 443)  # 512 * 512 pixels' worth
    high = shown_part(0, 0, large, "user").opened(bounds).image
    assert high.width * high.height <= bounds[1] < 1600 * 1200 and high.width / high.height == pytest.approx(
        4 / 3, 0.01
    )


def test_a_streamed_answer_about_a_picture_is_the_whole_answer(vision_api):
    client = vision_api.client()
    messages = _asking(_data_url(_picture()))
    whole = _ask(client, "vision", messages)
    chunks = list(_ask(client, "vision", messages, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()
        self.wfile.write(base64.b64decode(_data_url(_picture()).split(",", 1)[1]))

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def picture_server():
    """A real server that hands out a picture and records every request it gets."""
    _Recorder.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_urls_and_paths_are_refused_and_nothing_is_fetched_or_read(vision_api, picture_server, tmp_path):
    client = vision_api.client()
    on_disk = tmp_path / "red.png"
    _picture().save(on_disk)  # a real picture: a server that read it would answer
    bomb = Image.new("1", (7_000, 7_000))  # 49 million pixels in a few kB of PNG: over the studio's 40, under PIL's 89
    with _opens_of(on_disk) as opened:  # the endpoint serves in this process: every open() of the file is seen
        for url, match in (
            (f"{picture_server}/red.png", "never fetches URLs. Send the picture itself as a base64 data URL"),
            (f"HTTPS://{picture_server[7:]}/red.png", "never fetches URLs"),
            (f"file://{on_disk}", "never opens files by name. Send the picture's bytes"),
            (str(on_disk), "never opens files by name"),
            ("../red.png", "never opens files by name"),
            ("red.png", "must be a base64 data URL of an image"),
            ("data:text/plain;base64,aGVsbG8=", "must be a base64 data URL of an image"),
            (
                "data:image/png;base64,not*base64!",
                r"messages\[0\].content\[0\]: the picture's data is not valid base64",
            ),
            ("data:image/png;base64," + base64.b64encode(b"not a picture").decode(), "cannot be read as a picture"),
            ("data:image/png;base64," + "A" * (MAX_PICTURE_BYTES // 3 * 4 + 8), "larger than 10 MiB"),
            (_data_url(bomb), "more than 40 million pixels"),
        ):
            with pytest.raises(openai.BadRequestError, match=match) as refused:
                _ask(client, "vision", _asking(url))
            assert refused.value.body["type"] == "invalid_request_error"
            assert refused.value.body["param"].startswith("messages[0].content[0]")
        assert opened == []  # nothing opened the file, by any name
        on_disk.read_bytes()
        assert opened  # the watch sees an open
    assert _Recorder.hits == []  # nothing was fetched


@contextlib.contextmanager
def _opens_of(path: Path):
    """Every open of `path` (builtins.open, os.open, PIL's) in this process while the block runs, from Python's audit
    events: a hook stays for the process's life, so it records only while the block runs."""
    opened: list[str] = []
    watching = [True]
    target = os.path.realpath(path)

    def hook(event: str, args: tuple) -> None:
        if watching[0] and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            if os.path.realpath(os.fsdecode(args[0])) == target:
                opened.append(event)

    sys.addaudithook(hook)
    try:
        yield opened
    finally:
        watching[0] = False


def test_a_thin_strip_is_refused_by_its_part_before_it_is_decoded(vision_api, monkeypatch):
    """A strip of 600000x1 pixels is a few hundred bytes of PNG; scaled to the model's bounds it would be 0 pixels
    high. Sides more than 200:1 apart are Qwen's own refusal: the part is named, and the request is a client's error."""
    client = vision_api.client()
    sizes = ((600_000, 1), (20_000_000, 1), (1, 20_000_000), (201, 1))
    sent = {size: _data_url(_strip(size)) for size in sizes}
    with monkeypatch.context() as decoding:
        # the strips are small decoded: a decoder that raises (the endpoint serves in this process) proves the
        # refusal came from the header; a decode would fail the request as the server's error, not the client's
        decoding.setattr(ImageFile.ImageFile, "load", _refuse_decoding)
        for size in sizes:
            messages = [
                {"role": "user", "content": [{"type": "text", "text": ASKED}, *_asking(sent[size])[0]["content"]]}
            ]
            with pytest.raises(
                openai.BadRequestError, match=f"{size[0]}x{size[1]} pixels, its long side more than 200 times"
            ) as refused:
                _ask(client, "vision", messages)
            assert refused.value.status_code == 400 and refused.value.body["param"] == "messages[0].content[1]"
    assert _ask(client, "vision", _asking(_data_url(_strip((200, 1))))).choices  # 200:1 is taken


def _refuse_decoding(*_args, **_kwargs):
    raise RuntimeError("a picture's pixels were decoded")


def test_a_strip_within_200_to_1_is_answered_though_scaling_it_down_rounds_it_past(vision_api):
    """20000x100 is 200:1, taken as Chat and training take it; scaled down to the model's bound (10861x54) or low
    detail's (7240x36), its short side rounded down puts it a little past 200:1, which is not the client's doing:
    the picture is judged at the size sent, and the scaled one squeezed to 180:1 as training squeezes it."""
    client = vision_api.client()
    url = _data_url(Image.new("RGB", (20_000, 100), "white"))
    unseen = _ask(client, "vision", [{"role": "user", "content": ASKED}]).usage.prompt_tokens
    for detail in ({}, {"detail": "low"}):
        answered = _ask(client, "vision", _asking(url, **detail))
        assert answered.choices and answered.usage.prompt_tokens > unseen + 2


def _strip(size: tuple[int, int]) -> Image.Image:
    return Image.new("1", size)


def test_an_image_typed_in_the_text_stays_text(vision_api, vision_engine):
    """Only image_url parts place pictures; `<image>` typed in a text part is that text (as a system turn's in Chat)."""
    client = vision_api.client()
    typed = "What does <image> mean in HTML?"
    parts = [{"type": "text", "text": typed}, {"type": "image_url", "image_url": {"url": _data_url(_picture())}}]
    answered = _ask(client, "vision", [{"role": "user", "content": parts}])
    assert (
        answered.usage.prompt_tokens
        > _ask(client, "vision", [{"role": "user", "content": parts[1:]}]).usage.prompt_tokens
    )
    request = ChatRequest(model="vision", messages=[{"role": "user", "content": parts}])
    prompt = chat_prompt(vision_engine.tokenizer, request, vision_engine.pictures)
    text = vision_engine.tokenizer.decode(prompt.ids)
    assert text.count("<|vision_start|>") == 1 and text.index(typed) < text.index("<|vision_start|>")


def test_misplaced_or_malformed_parts_are_refused_by_name(vision_api):
    client = vision_api.client()
    picture = {"type": "image_url", "image_url": {"url": _data_url(_picture())}}
    for messages, match in (
        ([{"role": "system", "content": [picture]}, {"role": "user", "content": ASKED}], "in a system message"),
        ([{"role": "user", "content": [{"type": "image_url"}]}], "an image_url part needs its image_url"),
        ([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}], "Only text and image_url"),
        ([{"role": "user", "content": [picture] * 17}], "17 pictures; at most 16"),
        ([{"role": "user", "content": "<|image_pad|> " + ASKED}], re.escape("picture token <|image_pad|>")),
    ):
        with pytest.raises(openai.BadRequestError, match=match):
            _ask(client, "vision", messages)
    with pytest.raises(openai.BadRequestError, match="detail"):
        _ask(client, "vision", _asking(_data_url(_picture()), detail="huge"))


def test_a_text_model_is_refused_a_picture_by_its_name(api):
    with pytest.raises(openai.BadRequestError, match="strong reads text only; .* load a vision-language model"):
        _ask(api.client(), "strong", _asking(_data_url(_picture())))


def test_engines_without_pictures_refuse_them_as_a_request_error(tmp_path, tiny_model_dir, serve_endpoint):
    from studio.chat.vllm_engine import VllmEngine

    refused = _as_api_error(_raised(lambda: seeing(VllmEngine(ChatConfig(engine="vllm"), checked=True), "m")))
    assert refused.status == 400 and "Pictures go through the HF engine" in str(refused.message)
    pytest.importorskip("llama_cpp")
    from studio.api import Studio

    path = make_gguf(tiny_model_dir, tmp_path / "tiny.gguf")
    studio = Studio(tmp_path / "runs")
    studio.load_model(ModelConfig(name_or_path=str(path)), QuantizationConfig(method="none"))
    try:
        gguf = serve_endpoint(over=studio.engine)
        with pytest.raises(openai.BadRequestError, match="GGUF file tiny.gguf, which reads text only") as refused:
            _ask(gguf.client(), "tiny.gguf", _asking(_data_url(_picture())))
        assert str(tmp_path) not in str(refused.value.body)  # the file's name, as the model list has it; no path
    finally:
        studio.unload_model()


def _raised(call) -> Exception:
    try:
        call()
    except Exception as error:
        return error
    raise AssertionError("nothing was refused")
