"""Adding a dataset from the browser: upload a CSV with quoted line breaks, map its columns, preview it, train on it."""

import csv
import json

import pytest

ROWS = [
    {"q": "写一首两行的诗", "a": "第一行：春风\n第二行：细雨"},
    {"q": "列出三种水果", "a": "苹果\n香蕉\n橙子"},
    {"q": "What is 2+2?", "a": "4, of course.\nSimple arithmetic."},
] * 6


@pytest.fixture(scope="module")
def page(open_page):
    return open_page("Train")


def test_upload_map_preview_and_train(page, studio, tmp_path, shoot):
    upload = tmp_path / "my_poems.csv"
    with open(upload, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["q", "a"])
        writer.writeheader()
        writer.writerows(ROWS)
    page.locator("#qs-field-data-dataset_dir textarea").fill(str(studio.root / "mydata"))  # a folder of the workspace
    page.locator("#qs-add-dataset").get_by_text("Add a dataset").click()
    page.locator("#qs-upload input[type=file]").set_input_files(str(upload))
    page.locator("#qs-upload-proposal").get_by_text("18 rows").wait_for(timeout=30_000)
    editor = page.locator("#qs-upload-entry .cm-content")
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    editor.fill(json.dumps({"columns": {"prompt": "q", "response": "a"}}))  # the mapping, as the user confirms it
    page.locator("#qs-upload-name textarea").fill("poems")
    page.locator("#qs-upload-register").click()
    page.locator("#qs-upload-status").get_by_text("Registered").wait_for(timeout=30_000)
    preview = page.locator("#qs-preview")
    preview.get_by_text("poems").first.wait_for(timeout=60_000)
    shoot(page, "17-dataset-registered")
    page.locator("#qs-preview-table").get_by_text("第二行：细雨").first.wait_for(
        timeout=30_000
    )  # the quoted line break kept
    registry = json.loads((studio.root / "mydata" / "dataset_info.json").read_text())
    assert registry["poems"] == {"columns": {"prompt": "q", "response": "a"}, "file_name": "poems.csv"}
    shoot(page, "17-dataset-registered")

    page.locator("#qs-field-training-max_steps textarea").fill("2")
    page.locator("#qs-start").click()
    page.locator("#qs-progress").get_by_text("finished").wait_for(timeout=300_000)
    shoot(page, "18-trained-on-the-upload")


def test_a_bad_file_is_refused_and_the_registry_is_untouched(page, studio, tmp_path):
    bad = tmp_path / "broken.jsonl"
    bad.write_text('{"instruction": "q", "output": "a"}\n{"instruction": "q" "output": "a"}\n', encoding="utf-8")
    registry = studio.root / "mydata" / "dataset_info.json"
    before = registry.read_text() if registry.is_file() else None
    page.locator("#qs-field-data-dataset_dir textarea").fill(str(studio.root / "mydata"))
    if not page.locator("#qs-upload-register").is_visible():  # the accordion is still closed
        page.locator("#qs-add-dataset").get_by_text("Add a dataset").click()
    uploads = page.locator("#qs-upload")
    uploads.locator("input[type=file], button[aria-label*='lear']").first.wait_for(state="attached", timeout=10_000)
    clear = uploads.locator("button[aria-label*='lear']")
    if clear.count() and clear.first.is_visible():  # a file shown from before: it goes
        clear.first.click()
    uploads.locator("input[type=file]").set_input_files(str(bad))
    page.locator("#qs-upload-proposal").get_by_text("line 2").wait_for(timeout=30_000)
    assert (registry.read_text() if registry.is_file() else None) == before
