"""The dataset preview's pictures: thumbnails beside each row's text, made here as data: URIs (no workspace file is
served), every text escaped, a broken picture shown by its name."""

import base64
import io
import json
import re

from PIL import Image

from app.preview_view import pictures_html, pictures_update
from studio.config import DataConfig
from studio.data.preview import DatasetPreview, Preview, preview_datasets
from studio.paths import BUNDLED_DATA_DIR


def test_the_demo_sets_rows_show_their_pictures_beside_their_questions():
    preview = preview_datasets(DataConfig(datasets=["shapes_zh_demo"]), rows=3)
    markup = pictures_html(preview)
    sources = re.findall(r'<img src="([^"]+)" alt="([^"]+)"', markup)
    assert [alt for _, alt in sources] == ["01.png", "02.png", "03.png"]
    first = Image.open(io.BytesIO(base64.b64decode(sources[0][0].removeprefix("data:image/png;base64,"))))
    original = Image.open(BUNDLED_DATA_DIR / "shapes_zh_demo" / "01.png")
    assert first.size == (96, 96) and original.size == (112, 112)
    assert "图中有几个蓝色的圆？ / 图中有3个蓝色的圆。" in markup and "shapes_zh_demo</b> #1" in markup
    assert str(BUNDLED_DATA_DIR) not in markup  # no path of the server's disk reaches the page
    assert pictures_update(preview)["visible"] is True
    text_only = preview_datasets(DataConfig(datasets=["alpaca_zh_demo"]), rows=2)
    assert pictures_html(text_only) == "" and pictures_update(text_only)["visible"] is False


def test_text_is_escaped_and_a_broken_picture_shows_its_name(tmp_path):
    Image.new("RGB", (40, 40), "red").save(tmp_path / "ok.png")
    rows = [
        {
            "messages": [
                {"role": "user", "content": '<image><image><script>alert("x")</script>'},
                {"role": "assistant", "content": "<b>bold</b>"},
            ],
            "images": ["ok.png", "gone.png"],
        }
    ]
    (tmp_path / "gone.png").write_bytes(b"")  # checked when read, emptied since: the row still shows
    dataset = DatasetPreview(
        name="x<i>",
        file="d.json",
        formatting="openai",
        num_rows=1,
        num_usable=1,
        skipped={},
        rows=rows,
        pictures=[[str(tmp_path / "ok.png"), str(tmp_path / "gone.png")]],
    )
    markup = pictures_html(Preview([dataset]))
    assert "<script>" not in markup and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in markup
    assert "&lt;b&gt;bold&lt;/b&gt;" in markup and "<b>x&lt;i&gt;</b>" in markup
    assert markup.count("<img ") == 1 and '<span class="qs-thumb-missing" title="gone.png">⚠ gone.png</span>' in markup


def test_a_picture_column_of_another_name_is_left_out_of_the_rows_text(tmp_path):
    (tmp_path / "shots").mkdir()
    Image.new("RGB", (40, 40), "blue").save(tmp_path / "shots" / "one.png")
    turns = [{"role": "user", "content": "<image>什么颜色？"}, {"role": "assistant", "content": "蓝色。"}]
    (tmp_path / "set.json").write_text(json.dumps([{"messages": turns, "pics": "shots/one.png"}]), encoding="utf-8")
    entry = {"file_name": "set.json", "formatting": "openai", "columns": {"messages": "messages", "images": "pics"}}
    (tmp_path / "dataset_info.json").write_text(json.dumps({"shots": entry}), encoding="utf-8")
    preview = preview_datasets(DataConfig(dataset_dir=str(tmp_path), datasets=["shots"]), rows=1)
    assert preview.datasets[0].picture_column == "pics"
    markup = pictures_html(preview)
    [text] = re.findall(r'<div class="qs-picture-text">(.*?)</div>', markup)
    assert text.endswith("什么颜色？ / 蓝色。") and "shots/one.png" not in text  # the path shows as a thumbnail only
    assert markup.count("<img ") == 1


def test_a_pair_shows_its_prompt_and_both_answers_beside_its_picture():
    preview = preview_datasets(DataConfig(datasets=["shapes_zh_dpo_demo"]), rows=2)
    texts = re.findall(r'<div class="qs-picture-text">(.*?)</div>', pictures_html(preview))
    assert len(texts) == 2  # sharegpt pairs keep each answer as one message: both shown, named by their key
    assert texts[0].endswith("图中有几个蓝色的圆？ / chosen: 图中有3个蓝色的圆。 / rejected: 图中有1个蓝色的圆。")
