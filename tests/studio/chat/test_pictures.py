"""Chat about a picture with a vision-language model: base and adapter side by side on the same picture."""

import pytest
from PIL import Image, ImageDraw

from studio.chat.engine import ChatEngine
from studio.chat.pictures import PictureError
from studio.config import GenerationConfig, ModelConfig, QuantizationConfig
from tests.support import make_vision_adapter

GREEDY = GenerationConfig(temperature=0, max_new_tokens=6)


def _picture() -> Image.Image:
    image = Image.new("RGB", (80, 60), "white")
    ImageDraw.Draw(image).ellipse((10, 10, 50, 50), fill="red")
    return image


@pytest.fixture(scope="module")
def vision_engine(tiny_vl_model_dir, tmp_path_factory):
    adapter = make_vision_adapter(tiny_vl_model_dir, tmp_path_factory.mktemp("adapters") / "vision")
    engine = ChatEngine()
    engine.load(ModelConfig(name_or_path=str(tiny_vl_model_dir)), QuantizationConfig(method="none"))
    engine.load_adapter(str(adapter), "vision")
    return engine


def test_base_and_adapter_answer_about_the_same_picture(vision_engine):
    question = [{"role": "user", "content": "<image>图中有几个圆？"}]
    *_, final = vision_engine.stream([question, question], [None, "vision"], GREEDY, pictures=[[_picture()]] * 2)
    assert all(answer.tokens > 0 for answer in final)
    assert final[0].text != final[1].text  # the adapter changed the answer
    # the picture reaches the model: the same question with another picture is answered differently
    blue = Image.new("RGB", (80, 60), "blue")
    *_, other = vision_engine.stream([question], ["vision"], GREEDY, pictures=[[blue]])
    assert other[0].text != final[1].text or other[0].tokens != final[1].tokens


def test_evaluation_answers_with_pictures_equal_the_streamed_ones(vision_engine):
    question = [{"role": "user", "content": "<image>颜色？"}]
    *_, streamed = vision_engine.stream([question], ["vision"], GREEDY, pictures=[[_picture()]])
    answered = vision_engine.answers([question], ["vision"], GREEDY, pictures=[[_picture()]])
    assert answered == [streamed[0].text]


def test_a_wrong_number_of_placeholders_is_refused_by_name(vision_engine):
    question = [{"role": "user", "content": "<image><image>两张？"}]
    with pytest.raises(PictureError, match="2 <image>"):
        list(vision_engine.stream([question], [None], GREEDY, pictures=[[_picture()]]))


def test_a_thin_strip_or_a_huge_picture_is_refused_by_name_not_a_crash(vision_engine, tmp_path):
    """An upload of 600000x1 pixels (a few hundred bytes) would scale to 0 pixels high; sides more than 200:1 apart
    are refused by the picture's name (Qwen's rule), as is a picture over 40 million pixels (in a few kB of PNG)."""
    question = [{"role": "user", "content": "<image>这是什么？"}]
    thin, huge = tmp_path / "strip.png", tmp_path / "huge.png"
    Image.new("1", (600_000, 1)).save(thin)
    Image.new("1", (7_000, 7_000)).save(huge)
    for picture, match in (
        (str(thin), "picture strip.png is 600000x1 pixels, its long side more than 200 times its short one"),
        (Image.new("L", (1, 600_000)), "picture #1 is 1x600000 pixels"),
        (str(huge), "picture huge.png has more than 40 million pixels"),
    ):
        with pytest.raises(PictureError, match=match):
            list(vision_engine.stream([question], [None], GREEDY, pictures=[[picture]]))
    *_, answered = vision_engine.stream([question], [None], GREEDY, pictures=[[Image.new("L", (200, 1))]])
    assert answered[0].text is not None  # 200:1 is taken, widened to 28 pixels as training widens it


def test_an_upload_of_another_format_is_refused_by_name_and_never_rendered(vision_engine, tmp_path, monkeypatch):
    """Chat opens PNG, JPEG, WebP and GIF uploads only, as the endpoint does: PIL would read an EPS file (whatever
    its name) by running Ghostscript on it."""
    from PIL import EpsImagePlugin

    page = tmp_path / "page.png"
    page.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n%%EndComments\nshowpage\n%%EOF\n")
    rendered: list[object] = []

    def ghostscript(*args, **kwargs):
        rendered.append(args)
        raise RuntimeError("Ghostscript ran")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", ghostscript)
    with Image.open(page) as eps, pytest.raises(RuntimeError, match="Ghostscript ran"):
        eps.load()  # PIL left to itself takes it for an EPS and renders it
    assert eps.format == "EPS" and len(rendered) == 1
    question = [{"role": "user", "content": "<image>这是什么？"}]
    with pytest.raises(PictureError, match="picture page.png cannot be read .*upload a PNG, JPEG, WebP or GIF file"):
        list(vision_engine.stream([question], [None], GREEDY, pictures=[[str(page)]]))
    assert len(rendered) == 1  # Chat never rendered it


def test_a_strip_a_dataset_row_carries_is_answered_as_training_read_it(vision_engine, tmp_path):
    """Training squeezes a strip over 200:1 to 180:1 (LLaMA-Factory's rule) rather than refusing it, so Evaluate
    answers about a sample's strip too, while the same file handed in to Chat is refused."""
    strip = tmp_path / "strip.png"
    Image.new("RGB", (402, 2), "red").save(strip)
    asked = {"role": "user", "content": "<image>这是什么？", "images": [str(strip)]}
    assert vision_engine.answers([[asked]], [None], GREEDY)[0] is not None
    with pytest.raises(PictureError, match="strip.png is 402x2 pixels"):
        vision_engine.answers([[dict(asked, images=None)]], [None], GREEDY, pictures=[[str(strip)]])
    gone = dict(asked, images=[str(tmp_path / "gone.png")])  # deleted since the run: named, not a crash
    with pytest.raises(PictureError, match="gone.png"):
        vision_engine.answers([[gone]], [None], GREEDY)


def test_a_text_model_refuses_a_picture_by_name(tiny_model_dir):
    engine = ChatEngine()
    engine.load(ModelConfig(name_or_path=str(tiny_model_dir)), QuantizationConfig(method="none"))
    with pytest.raises(PictureError, match="reads text only"):
        list(engine.stream([[{"role": "user", "content": "<image>?"}]], [None], GREEDY, pictures=[[_picture()]]))


def test_turns_that_carry_their_pictures_are_scored_and_answered_with_them(vision_engine, tmp_path):
    """Evaluation's samples come from the run's val.jsonl, whose turns carry `images` as dataset rows do."""
    path = tmp_path / "red.png"
    _picture().save(path)
    asked = {"role": "user", "content": "<image>几个圆？", "images": [str(path)]}
    conversation = [asked, {"role": "assistant", "content": "一个圆。"}]
    total, count = vision_engine.token_loss([conversation], "vision", cutoff_len=256, batch_size=2)
    assert count > 0 and total > 0
    blank = [dict(asked, images=[str(tmp_path / "blank.png")]), conversation[1]]
    Image.new("RGB", (80, 60), "white").save(tmp_path / "blank.png")
    other, _ = vision_engine.token_loss([blank], "vision", cutoff_len=256, batch_size=2)
    assert other != total  # the picture is part of what is scored
    carried = vision_engine.answers([[asked]], ["vision"], GREEDY)
    assert carried == vision_engine.answers([[dict(asked, images=None)]], ["vision"], GREEDY, pictures=[[str(path)]])


def test_an_answer_with_pictures_stops_at_the_chat_format_s_end_token(vision_engine):
    """The model's generation config names another end token than the chat format's <|im_end|>: generate is told
    every end token, so the row ends at its first step instead of running to max_new_tokens."""
    from tests.support.end_tokens import ends_at_once

    tokenizer = vision_engine.tokenizer
    end, other = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|vision_end|>"])
    question = [{"role": "user", "content": "<image>颜色？"}]
    long = GenerationConfig(temperature=0, max_new_tokens=12)
    with ends_at_once(vision_engine.model, end, other) as steps:
        assert end in vision_engine.stop_ids
        answered = vision_engine.answers([question], ["vision"], long, pictures=[[_picture()]])
    assert answered == [""] and len(steps) == 1


def test_a_system_turn_s_placeholder_is_its_text_as_in_training_data(vision_engine):
    system = {"role": "system", "content": "Pictures come as <image>."}
    question = [system, {"role": "user", "content": "<image>颜色？"}]
    *_, final = vision_engine.stream([question], ["vision"], GREEDY, pictures=[[_picture()]])
    assert final[0].done and final[0].tokens > 0


def test_the_model_s_own_picture_words_typed_in_a_message_are_refused_by_name(vision_engine):
    """As training data refuses them: they would reach the model as image tokens without pixels."""
    typed = [{"role": "user", "content": "what is <|image_pad|>?"}]
    refused = pytest.raises(PictureError, match=r"own picture token <\|image_pad\|>")
    with refused:
        next(vision_engine.stream([typed], [None], GREEDY))
    with refused:
        shown = [{"role": "user", "content": "<image>" + typed[0]["content"]}]
        vision_engine.answers([shown], [None], GREEDY, pictures=[[_picture()]])
    system = GenerationConfig(temperature=0, max_new_tokens=2, system_prompt="<|vision_start|>")
    with pytest.raises(PictureError, match=r"<\|vision_start\|>"):
        next(vision_engine.stream([[{"role": "user", "content": "hi"}]], [None], system))


def test_each_family_answers_about_pictures_alone_as_in_a_batch_and_scores_them(each_vl_model_dir, tmp_path):
    """Qwen2-VL, Qwen2.5-VL and Qwen3-VL: rows with pictures of other sizes (so other lengths, left-padded together)
    answer as they do alone, evaluation's answers equal the streamed ones, and a picture changes what is scored."""
    engine = ChatEngine()
    engine.load(ModelConfig(name_or_path=str(each_vl_model_dir)), QuantizationConfig(method="none"))
    question = [{"role": "user", "content": "<image>图中有几个圆？"}]
    shown = [[_picture()], [Image.new("RGB", (40, 120), "blue")]]
    *_, together = engine.stream([question, question], [None, None], GREEDY, pictures=shown)
    assert all(row.done and row.tokens > 0 for row in together)
    alone = [engine.answers([question], [None], GREEDY, pictures=[picture])[0] for picture in shown]
    assert alone == [row.text for row in together]
    losses = []
    for name, picture in zip(("red.png", "blue.png"), shown):
        picture[0].save(tmp_path / name)
        asked = {"role": "user", "content": "<image>几个圆？", "images": [str(tmp_path / name)]}
        conversation = [asked, {"role": "assistant", "content": "一个圆。"}]
        losses.append(engine.token_loss([conversation], None, cutoff_len=256, batch_size=2)[0])
    assert losses[0] != losses[1]
