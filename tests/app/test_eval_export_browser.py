"""Evaluate & Predict and Export in a real headless Chromium, with the tiny model and a fixture adapter."""

import pytest
from playwright.sync_api import expect


@pytest.fixture(scope="module")
def page(open_page):
    return open_page("Evaluate & Predict")


def _choose_adapter(page, elem_id, path):
    box = page.locator(f"#{elem_id} input")
    box.fill(str(path))
    box.press("Enter")


def test_evaluate_base_vs_adapter(page, strong_adapter, shoot):
    page.get_by_role("tab", name="Evaluate & Predict").click()
    _choose_adapter(page, "qs-eval-adapter", strong_adapter)
    page.locator("#qs-eval-start").click()
    page.locator("#qs-eval-progress").get_by_text("finished").wait_for(timeout=120_000)
    # the tables and the file list arrive with "finished" but may be drawn a moment later: wait for their content
    table = page.locator("#qs-eval-metrics")
    for word in ("rouge-l", "difference", "strong", "exact_match", "accuracy"):  # task metrics beside BLEU/ROUGE
        expect(table).to_contain_text(word, use_inner_text=True, timeout=30_000)
    # sorted by the change in the first task metric, worst first
    for word in ("prediction", "change", "strong · exact_match"):
        expect(page.locator("#qs-eval-samples")).to_contain_text(word, use_inner_text=True, timeout=30_000)
    downloads = "() => { const t = document.querySelector('#qs-eval-downloads').innerText.replaceAll('\\n', '');"
    downloads += " return t.includes('generated_predictions.jsonl') && t.includes('generated_predictions.csv'); }"
    page.wait_for_function(downloads, timeout=30_000)
    shoot(page, "08-evaluate")


def test_the_demo_benchmark_shows_base_and_adapter_accuracy_per_subject(page, strong_adapter, shoot):
    page.get_by_role("tab", name="Evaluate & Predict").click()
    _choose_adapter(page, "qs-eval-adapter", strong_adapter)
    benchmarks = page.locator("#qs-field-evaluation-benchmarks input")
    benchmarks.click()
    benchmarks.fill("ceval_zh_demo")
    benchmarks.press("Enter")
    page.keyboard.press("Escape")
    page.locator(
        "#qs-field-evaluation-benchmark_limit textarea, #qs-field-evaluation-benchmark_limit input"
    ).first.fill("4")
    held_out = page.locator("#qs-field-evaluation-held_out input[type=checkbox]")
    if held_out.is_checked():
        held_out.click()
    page.locator("#qs-eval-start").click()
    page.locator("#qs-eval-metrics").get_by_text("ceval_zh_demo · acc", exact=True).wait_for(timeout=300_000)
    table = page.locator("#qs-eval-metrics").inner_text()
    for row in ("ceval_zh_demo · acc", "小学数学 (elementary math) · acc", "中国地理 (Chinese geography) · acc"):
        assert row in table
    assert "strong" in table and "difference" in table and "rouge-l" not in table
    shoot(page, "08b-evaluate-benchmark")
    held_out.click()  # as the next test expects the tab
    benchmarks_box = page.locator("#qs-field-evaluation-benchmarks")
    benchmarks_box.locator(".token .token-remove, .token button").first.click()


def test_export_merges_and_checks(page, strong_adapter, shoot):
    page.get_by_role("tab", name="Export").click()
    _choose_adapter(page, "qs-export-adapter", strong_adapter)
    page.locator("#qs-export-start").click()
    page.locator("#qs-export-result").get_by_text("reload check").wait_for(timeout=120_000)
    assert "finished" in page.locator("#qs-export-result").inner_text()
    shoot(page, "09-export")


def _field(page, name, value):
    box = page.locator(f"#qs-field-{name}").locator("input, textarea").first
    box.click()
    box.fill(value)
    box.press("Enter")
    page.keyboard.press("Escape")


def test_a_gguf_export_answers_in_llama_cpp_as_the_merged_model_and_chats(page, strong_adapter, studio, shoot):
    pytest.importorskip("llama_cpp")  # the extra gguf-check (in the test extra)
    page.get_by_role("tab", name="Export", exact=True).click()
    _choose_adapter(page, "qs-export-adapter", strong_adapter)
    out, model = studio.root / "export-f16", page.locator("#qs-field-model-name_or_path input").input_value()
    _field(page, "export-output_dir", str(out))
    _field(page, "export-format", "gguf")
    _field(page, "export-gguf_type", "f16")
    page.locator("#qs-export-start").click()
    result = page.locator("#qs-export-result")
    ended = "() => { const t = document.querySelector('#qs-export-result').innerText;"
    ended += " return t.includes('export-f16-f16.gguf') && (t.includes('finished') || t.includes('failed')); }"
    page.wait_for_function(ended, timeout=180_000)  # this export's end, not an earlier export's
    text = result.inner_text()
    assert "finished" in text and "answers to all 3 prompts equal to the merged model's, token for token" in text
    assert text.count(": equal [") == 3 and "tokenizer reads the rendered prompts into the studio's ids ✓" in text
    shoot(page, "09b-export-gguf-llama-cpp")

    # the written file in Chat, through llama.cpp: it answers in the base pane alone
    _field(page, "model-name_or_path", str(out / "export-f16-f16.gguf"))
    page.get_by_role("tab", name="Chat", exact=True).click()
    page.locator("#qs-chat-load").click()
    page.locator("#qs-chat-status").get_by_text("in llama.cpp (CPU)").wait_for(timeout=60_000)
    page.locator("#qs-chat-adapter-answers").wait_for(state="hidden", timeout=10_000)  # "Base only"
    page.locator("#qs-chat-prompt textarea").fill("1+1=?")
    page.locator("#qs-chat-send").click()
    # answered: the message box emptied by the answer's first update (which comes after Send is greyed) and Send
    # usable again; Send alone can still be enabled right after the click, before the server greys it
    page.wait_for_function(
        "() => document.querySelector('#qs-chat-prompt textarea').value === ''"
        " && !document.querySelector('#qs-chat-send').disabled",
        timeout=60_000,
    )
    assert (
        "1+1=?" in page.locator("#qs-chat-base").inner_text()
        and "Error" not in page.locator("#qs-chat-status").inner_text()
    )
    page.get_by_text("tokens ·").first.wait_for(timeout=10_000)  # the answer's speed line
    shoot(page, "09c-chat-gguf")
    page.get_by_role("button", name="Unload model").click()
    page.locator("#qs-chat-status").get_by_text("Unloaded").wait_for(timeout=30_000)
    _field(page, "model-name_or_path", model)  # the page as the other tests expect it
    page.get_by_role("tab", name="Export", exact=True).click()
    _field(page, "export-format", "safetensors")
    _field(page, "export-output_dir", str(studio.root / "export"))
