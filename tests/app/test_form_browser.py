"""The form in a real Chromium, bound by field name: every visible field survives Save, a reload and Load;
a generation setting changed in Chat is the one Evaluate uses."""

import json
import time

import pytest

from app.server import build_page
from studio.api import Studio
from studio.config import RunConfig
from studio.config.recipes import with_recipe
from tests.support.form_driver import changed_value, read_value, reveal, set_value, shown


@pytest.fixture(scope="module")
def layout(studio):
    """The server's page, built here to enumerate its fields (the server was started with this config)."""
    return build_page(Studio("runs"), RunConfig.from_yaml(studio.config_file))


# fields whose next values would make a config that cannot train (a quantised base with PiSSA/OLoRA, a whole-model
# method with lora.init_adapter set, mask_history with train_on_prompt, label smoothing of a hinge loss, the
# options kept only to refuse them by name), or leave their range: values that combine instead
COMBINABLE = {
    "quantization.method": "none",
    "lora.init": "olora",
    "finetuning.method": "oft",
    "data.mask_history": False,
    "preference.label_smoothing": 0.0,
    "training.lr_factor": "0.5",  # an optional number: a text box
    "optimizer.adam_epsilon": 1e-6,
    "optimizer.galore_layerwise": False,
    "optimizer.apollo_layerwise": False,
    "optimizer.badam_mode": "layer",
}


def _value_at(config, path: str):
    for part in path.split("."):
        config = getattr(config, part)
    return config


def test_every_field_round_trips_through_save_reload_and_load(open_page, layout, studio, shoot):
    page = open_page("Train")
    form = layout.page.form
    model, stage = form.controls["model.name_or_path"], form.controls["training.stage"]
    new_model, new_stage = changed_value(model, form.default(model.path)), changed_value(stage, "sft")
    set_value(page, model, new_model)  # a model picked by the user brings its recipe: the other fields start from it
    page.locator("#qs-recipe-note").get_by_text("tutorial recipe").wait_for(timeout=30_000)
    reveal(page, stage.component)
    set_value(page, stage, new_stage)  # and so does a stage
    page.locator("#qs-recipe-note").get_by_text(f"qwen1.5-1.8b-chat-{new_stage}.yaml").wait_for(timeout=30_000)
    baseline = with_recipe(form.defaults.with_overrides({model.path: new_model, stage.path: new_stage}))
    expected = {model.path: new_model, stage.path: new_stage}
    for path, control in form.controls.items():
        if path in expected:
            continue
        value = COMBINABLE.get(path, changed_value(control, _value_at(baseline, path)))
        expected[path] = shown(control, value)
        reveal(page, control.component)
        set_value(page, control, value)
        assert read_value(page, control) == expected[path], path
    target = "configs/roundtrip.yaml"
    page.get_by_role("tab", name="Train", exact=True).click()
    page.get_by_role("button", name="Preview command").click()
    page.locator("#qs-config-path textarea").fill(target)
    page.get_by_role("button", name="Save config").click()
    page.get_by_text("Saved:").wait_for(timeout=30_000)
    saved = RunConfig.from_yaml(studio.workspace / target)
    assert saved.lora.rank == expected["lora.rank"] and saved.generation.top_k == expected["generation.top_k"]

    page.reload()
    page.get_by_role("tab", name="Train").wait_for(timeout=60_000)
    page.get_by_role("button", name="Preview command").click()
    page.locator("#qs-config-path textarea").fill(target)
    page.get_by_role("button", name="Load config").click()
    page.get_by_text("Loaded:").wait_for(timeout=30_000)
    mismatches = {}
    for path, control in form.controls.items():
        reveal(page, control.component)
        if read_value(page, control) != expected[path]:
            mismatches[path] = (read_value(page, control), expected[path])
    shoot(page, "10-form-round-trip")
    assert not mismatches


def test_evaluate_uses_the_generation_settings_from_chat(open_page, studio, strong_adapter):
    page = open_page("Chat")
    page.get_by_role("tab", name="Chat", exact=True).click()
    page.locator("button.label-wrap").filter(has=page.locator("span:text-is('Generation settings')")).click()
    tokens = page.locator("#qs-field-generation-max_new_tokens input")
    tokens.fill("5")
    tokens.press("Tab")
    page.wait_for_timeout(1500)  # a reply to an event of the page's load that came late would show by now
    assert tokens.input_value() == "5"
    page.get_by_role("tab", name="Evaluate & Predict", exact=True).click()
    adapter = page.locator("#qs-eval-adapter input")
    adapter.fill(str(strong_adapter))
    adapter.press("Enter")
    assert tokens.input_value() == "5"  # still, in the hidden Chat tab
    started = time.time()
    page.locator("#qs-eval-start").click()
    page.locator("#qs-eval-progress").get_by_text("finished").wait_for(timeout=180_000)
    [metrics] = [p for p in (studio.root / "evaluations").rglob("metrics.json") if p.stat().st_mtime > started]
    assert json.loads(metrics.read_text())["generation"]["max_new_tokens"] == 5
