"""A set of pictures from the browser: upload a zip of the demo data and its pictures, register it, and the preview
shows each row's pictures as thumbnails beside its text, token lengths counted with the picture tokens."""

import json
import zipfile

import pytest

from studio.paths import BUNDLED_DATA_DIR
from tests.app.conftest import serve_studio


@pytest.fixture(scope="module")
def studio(tmp_path_factory, tiny_vl_model_dir):
    with serve_studio(tmp_path_factory, tiny_vl_model_dir) as served:
        yield served


@pytest.fixture(scope="module")
def page(open_page):
    return open_page("Train")


def test_an_uploaded_set_of_pictures_previews_with_thumbnails(page, studio, tmp_path, shoot):
    archive = tmp_path / "shapes.zip"
    with zipfile.ZipFile(archive, "w") as packed:
        packed.write(BUNDLED_DATA_DIR / "shapes_zh_demo.json", "shapes/shapes_zh_demo.json")
        for picture in sorted((BUNDLED_DATA_DIR / "shapes_zh_demo").iterdir()):
            packed.write(picture, f"shapes/shapes_zh_demo/{picture.name}")
    page.locator("#qs-field-data-dataset_dir textarea").fill(str(studio.root / "pictures"))
    page.locator("#qs-add-dataset").get_by_text("Add a dataset").click()
    page.locator("#qs-upload input[type=file]").set_input_files(str(archive))
    page.locator("#qs-upload-proposal").get_by_text("40 pictures come with it").wait_for(timeout=30_000)
    page.locator("#qs-upload-name textarea").fill("shapes")
    page.locator("#qs-upload-register").click()
    page.locator("#qs-upload-status").get_by_text("Registered").wait_for(timeout=30_000)
    pictures = page.locator("#qs-preview-pictures")
    pictures.locator("img").first.wait_for(timeout=120_000)
    assert pictures.locator("img").count() >= 5
    assert pictures.locator("img").first.get_attribute("src").startswith("data:image/png;base64,")
    assert "图中有几个蓝色的圆？" in pictures.inner_text()
    page.locator("#qs-preview").get_by_text("tokens: median").wait_for(timeout=60_000)  # the tiny VL model's count
    registry = json.loads((studio.root / "pictures" / "dataset_info.json").read_text(encoding="utf-8"))
    assert registry["shapes"]["columns"]["images"] == "images"
    assert len(list((studio.root / "pictures" / "shapes_zh_demo").iterdir())) == 40
    shoot(page, "33-preview-pictures")
