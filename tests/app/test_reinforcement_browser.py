"""GRPO through the page, as a user of ms-swift's GRPO tab would run it, in a real Chromium: pick the stage (its
recipe fills the rewards), shorten it, start, and watch the reward chart and the table of the latest answers fill."""

import pytest

from app.server import build_page
from studio.api import Studio
from studio.config import RunConfig
from tests.support.form_driver import reveal, set_value


@pytest.fixture(scope="module")
def layout(studio):
    return build_page(Studio("runs"), RunConfig.from_yaml(studio.config_file))


@pytest.fixture(scope="module")
def page(open_page):
    return open_page("Train", height=1400)


def _field(layout, path):
    return layout.page.form.controls[path]


def _set(page, layout, path: str, value) -> None:
    control = _field(layout, path)
    reveal(page, control.component)
    set_value(page, control, value)


def test_a_short_grpo_run_fills_the_reward_chart_and_the_answers_table(page, layout, shoot):
    _set(page, layout, "training.stage", "grpo")
    page.locator("#qs-recipe-note").get_by_text("GRPO").wait_for(timeout=30_000)
    assert "arithmetic_zh_demo" in page.locator("#qs-field-data-datasets").inner_text()
    for path, value in (
        ("quantization.method", "none"),
        ("grpo.num_generations", 2),
        ("generation.max_new_tokens", 8),
        ("training.learning_rate", "0.005"),
        ("training.batch_size", 2),
        ("training.gradient_accumulation_steps", 1),
        ("training.logging_steps", 1),
    ):
        _set(page, layout, path, value)
    _set(page, layout, "training.max_steps", "3")
    runs = page.locator("#qs-runs input")
    before = runs.input_value()
    page.locator("#qs-start").click()
    page.wait_for_function(
        "before => (document.querySelector('#qs-runs input') || {}).value !== before", arg=before, timeout=120_000
    )
    assert runs.input_value().startswith("browser")
    page.locator("#qs-progress").get_by_text("finished").wait_for(timeout=300_000)
    page.locator("#qs-margin-chart .js-plotly-plot").wait_for(timeout=30_000)
    # the progress box (polled every second) can say "finished" before the charts of the last steps are drawn:
    # wait for the legend of the total and of each reward function, not only for a chart
    page.wait_for_function(
        """() => {
            const text = (document.querySelector('#qs-rewards-chart') || {}).innerText || '';
            return ['reward', 'accuracy', 'format'].every(name => text.includes(name));
        }""",
        timeout=60_000,
    )
    answers = page.locator("#qs-answers")
    answers.get_by_text("Latest answers (step 3)").wait_for(timeout=30_000)
    # the table's rows may be drawn a moment after its title: wait for the group's two answers, then read
    page.wait_for_function(
        "() => document.querySelector('#qs-answers').innerText.split('<answer>').length > 2", timeout=30_000
    )
    table = answers.inner_text()
    assert "prompt" in table and "reward" in table and "<answer>" in table  # the reference, in its format
    assert table.count("<answer>") >= 2  # the latest group: one prompt's two answers, each beside the reference
    shoot(page, "40-grpo-run")
