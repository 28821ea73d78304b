"""A vision-language model end to end in a real headless Chromium: upload the demo picture set as a zip, see its
thumbnails in the preview, train a short run on it, and ask base and adapter about one picture side by side."""

import re
import zipfile

import pytest

from studio.paths import BUNDLED_DATA_DIR
from tests.app.conftest import serve_studio

DEMO = "shapes_zh_demo"


@pytest.fixture(scope="module")
def studio(tmp_path_factory, tiny_vl_model_dir):
    with serve_studio(tmp_path_factory, tiny_vl_model_dir, **{"data.cutoff_len": "256"}) as served:
        yield served


@pytest.fixture(scope="module")
def page(open_page):
    return open_page("Train")


@pytest.fixture(scope="module")
def demo_zip(tmp_path_factory):
    """The bundled demo set as a user would upload it: its data file and its folder of pictures in one zip."""
    target = tmp_path_factory.mktemp("upload") / f"{DEMO}.zip"
    with zipfile.ZipFile(target, "w") as archive:
        archive.write(BUNDLED_DATA_DIR / f"{DEMO}.json", f"{DEMO}.json")
        for picture in sorted((BUNDLED_DATA_DIR / DEMO).iterdir()):
            archive.write(picture, f"{DEMO}/{picture.name}")
    return target


def test_upload_preview_train_and_chat_about_a_picture(page, studio, demo_zip, shoot):
    _upload_and_preview(page, studio, demo_zip, shoot)
    run_id = _train(page, shoot)
    _chat_about_a_picture(page, run_id, shoot)


def _upload_and_preview(page, studio, demo_zip, shoot):
    page.locator("#qs-field-data-dataset_dir textarea").fill(str(studio.root / "mydata"))
    page.locator("#qs-add-dataset").get_by_text("Add a dataset").click()
    page.locator("#qs-upload input[type=file]").set_input_files(str(demo_zip))
    page.locator("#qs-upload-proposal").get_by_text("pictures").first.wait_for(timeout=180_000)
    page.locator("#qs-upload-name textarea").fill("shapes")
    page.locator("#qs-upload-register").click()
    page.locator("#qs-upload-status").get_by_text("Registered").wait_for(timeout=180_000)
    thumbnails = page.locator("#qs-preview-pictures img")
    thumbnails.first.wait_for(timeout=180_000)
    assert thumbnails.count() >= 2
    assert (studio.root / "mydata" / DEMO).is_dir()  # unpacked beside its data file, inside the workspace
    shoot(page, "40-picture-set-preview")


def _train(page, shoot) -> str:
    page.locator("#qs-field-training-max_steps textarea").fill("3")
    page.locator("#qs-start").click()
    page.wait_for_function(
        "() => document.querySelector('#qs-progress').textContent.includes('finished')", timeout=300_000
    )
    shoot(page, "41-picture-run-finished")
    return page.locator("#qs-runs input").input_value()


def _chat_about_a_picture(page, run_id, shoot):
    page.get_by_role("tab", name="Chat", exact=True).click()
    page.locator("#qs-chat-load").click()
    page.locator("#qs-chat-status").get_by_text(re.compile(r"^Loaded .* in [0-9.]+ s")).wait_for(timeout=180_000)
    picture_box = page.locator("#qs-chat-picture")
    picture_box.wait_for(state="visible", timeout=90_000)  # shown for a vision-language model
    adapters = page.locator("#qs-chat-adapter input")
    adapters.click()
    page.get_by_role("option", name=run_id).click()
    page.locator("#qs-chat-load-adapter").click()
    page.locator("#qs-chat-status").get_by_text(re.compile(r"Adapter .* loaded onto")).wait_for(timeout=180_000)
    picture = next((BUNDLED_DATA_DIR / DEMO).iterdir())
    picture_box.locator("input[type=file]").set_input_files(str(picture))
    picture_box.locator("img").first.wait_for(timeout=90_000)
    page.locator("#qs-chat-prompt textarea").fill("图中有几个圆？")
    page.locator("#qs-chat-send").click()
    page.get_by_text("tok/s").nth(1).wait_for(timeout=120_000)
    page.wait_for_function("() => !document.querySelector('#qs-chat-send').disabled", timeout=120_000)
    for pane in ("#qs-chat-base", "#qs-chat-adapter-answers"):
        assert page.locator(f"{pane} img").count() >= 1  # the same picture shown in both panes
        assert "图中有几个圆？" in page.locator(pane).inner_text()
    assert "rror" not in page.locator("#qs-chat-status").inner_text()
    shoot(page, "42-picture-chat-side-by-side")
