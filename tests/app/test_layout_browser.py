"""The page's layout measured in a real headless Chromium at 1280 and 1920 px: no chart label overlaps another or
leaves its figure, the command box is as tall as its text, the Compare table shows its last row.

A DPO run (rewards, margin and accuracy, eval points) and an SFT run give every chart data.
"""

import shutil

import pytest

from tests.support import quick_run
from tests.support.form_driver import tick

WIDTHS = [1280, 1920]
TRAIN_CHARTS = ["qs-loss-chart", "qs-lr-chart", "qs-memory-chart", "qs-rewards-chart", "qs-margin-chart"]

# Every text of a plotly figure as a box, grouped by what it is: title, legend, axis titles, each axis's tick
# labels, annotations. Returns the figure's own box too, so callers can check that nothing leaves it.
LABEL_BOXES = """id => {
  const plot = document.querySelector(`#${id} .js-plotly-plot`);
  const box = (el, group) => {
    const r = el.getBoundingClientRect();
    return {group, text: el.textContent.trim(), l: r.left, t: r.top, r: r.right, b: r.bottom, w: r.width};
  };
  const all = (selector, group) => [...plot.querySelectorAll(selector)].map(e => box(e, group(e)));
  const labels = [
    ...all('g[class$="tick"] > text', e => e.parentNode.getAttribute('class')),  // xtick, y2tick, ...
    ...all('text[class$="title"]', e => e.getAttribute('class')),  // gtitle, gtitle-subtitle, xtitle, y2title, ...
    ...all('g.legend', () => 'legend'),
    ...all('g.annotation', () => 'annotation'),
  ];
  return {figure: box(plot.querySelector('.main-svg'), 'figure'), labels: labels.filter(b => b.w > 0 && b.text)};
}"""

# the table's scroller (Gradio draws the body as a virtual list of rows in it) and its last row
TABLE_FIT = """() => {
  const view = document.querySelector('#qs-compare-table .virtual-table-viewport');
  const rows = view.querySelectorAll('.virtual-row'), last = rows[rows.length - 1];
  const box = view.getBoundingClientRect(), row = last.getBoundingClientRect();
  return {last_row: last.innerText, last_bottom: row.bottom, view_bottom: box.top + view.clientHeight,
          scroll_height: view.scrollHeight, client_height: view.clientHeight,
          scroll_width: view.scrollWidth, client_width: view.clientWidth};
}"""

COMMAND_FIT = """() => {
  const box = document.querySelector('#qs-cli'), text = box.querySelector('.cm-content');
  return {box: box.getBoundingClientRect().height, text: text.getBoundingClientRect().height};
}"""


@pytest.fixture(scope="module")
def runs(studio, tmp_path_factory, tiny_model_dir):
    """{"dpo": run_id, "sft": run_id}: real finished runs, the SFT one evaluated (its BLEU and ROUGE rows make the
    Compare table taller than Gradio's default 500 px), copied into the served runs folder."""
    from studio.api import Studio
    from studio.config import RunConfig
    from studio.control.device_lock import DeviceLocks

    root = tmp_path_factory.mktemp("layout")
    trainer = Studio(root / "runs", locks=DeviceLocks(root / "locks"))
    common = {**quick_run(tiny_model_dir), "training.max_steps": "8", "training.eval_steps": "2"}
    variants = {"dpo": {"training.stage": "dpo", "data.datasets": "[dpo_zh_demo]"}, "sft": {}}
    ids, configs = {}, {}
    for name, overrides in variants.items():
        configs[name] = RunConfig().with_overrides({**common, "name": f"layout-{name}", **overrides})
        ids[name] = trainer.start(configs[name])
        assert trainer.wait(ids[name], timeout=300).state == "finished"
    trainer.evaluate(configs["sft"], str(root / "runs" / ids["sft"] / "adapter"), compare=True)
    for run_id in ids.values():  # run folders are self-contained: copies are the same runs
        shutil.copytree(root / "runs" / run_id, studio.root / "runs" / run_id)
    return ids


@pytest.fixture(params=WIDTHS, ids=lambda width: f"{width}px")
def page(request, open_page, runs):
    """A new page at the width: plotly sizes a chart as it draws it (a window resized while another tab shows
    keeps the old sizes)."""
    page = open_page("Train")
    page.set_viewport_size({"width": request.param, "height": 1000})
    return page


def _overlaps(a: dict, b: dict, slack: float = 1.0) -> bool:
    return a["l"] < b["r"] - slack and b["l"] < a["r"] - slack and a["t"] < b["b"] - slack and b["t"] < a["b"] - slack


def _inside(label: dict, figure: dict, slack: float = 1.0) -> bool:
    return (
        label["l"] >= figure["l"] - slack
        and label["r"] <= figure["r"] + slack
        and label["t"] >= figure["t"] - slack
        and label["b"] <= figure["b"] + slack
    )


def _label_problems(boxes: dict) -> list[str]:
    """Labels that leave the figure or sit on a label of another kind (tick labels of two axes may meet at the
    corner where the axes cross: that reads fine)."""
    labels, figure = boxes["labels"], boxes["figure"]
    problems = [f"{a['group']} {a['text']!r} leaves the figure" for a in labels if not _inside(a, figure)]
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            ticks = a["group"].endswith("tick") and b["group"].endswith("tick")
            if a["group"] != b["group"] and not ticks and _overlaps(a, b):
                problems.append(f"{a['group']} {a['text'][:40]!r} overlaps {b['group']} {b['text'][:40]!r}")
    return problems


def _problems(page, charts) -> str:
    return "\n".join(
        f"{chart}: {problem}" for chart in charts for problem in _label_problems(page.evaluate(LABEL_BOXES, chart))
    )


def _chart_drawn(page, elem_id: str, groups: tuple[str, ...]) -> None:
    """Waits until the chart shows labels of every group in `groups` (plotly draws after the value arrives)."""
    script = """([id, groups]) => { const p = document.querySelector(`#${id} .js-plotly-plot`);
      return !!p && groups.every(g => p.querySelector(`.${g}`)); }"""
    page.wait_for_function(script, arg=[elem_id, list(groups)], timeout=30_000)


def _show_run(page, run_id: str) -> None:
    """The Train tab on the run, every chart drawn (the margin chart's right axis and the memory note last)."""
    if page.locator("#qs-runs input").input_value() != run_id:
        page.locator("#qs-runs input").click()
        page.get_by_role("option", name=run_id, exact=True).click()
    page.locator("#qs-progress", has_text="finished").wait_for(timeout=30_000)
    _chart_drawn(page, "qs-margin-chart", ("y2tick", "legend", "gtitle"))
    _chart_drawn(page, "qs-memory-chart", ("gtitle-subtitle", "xtitle"))


def _preview_command(page) -> None:
    page.get_by_role("button", name="Preview command").click()
    page.locator("#qs-cli").get_by_text("Memory per process").first.wait_for(timeout=30_000)


def test_train_charts_keep_their_labels_apart(page, runs, shoot):
    _show_run(page, runs["dpo"])
    _preview_command(page)
    shoot(page, f"20-layout-train-{page.viewport_size['width']}")
    problems = _problems(page, TRAIN_CHARTS)
    assert not problems, problems
    margin = page.evaluate(LABEL_BOXES, "qs-margin-chart")["labels"]
    assert "100%" in [label["text"] for label in margin if label["group"] == "y2tick"]


def test_charts_go_two_a_row_and_one_a_row_on_a_narrow_screen(page, runs):
    width = page.viewport_size["width"]
    _show_run(page, runs["dpo"])
    boxes = {chart: page.locator(f"#{chart}").bounding_box() for chart in TRAIN_CHARTS}
    assert all(box["width"] >= width * 0.4 for box in boxes.values()), boxes
    assert boxes["qs-lr-chart"]["y"] == boxes["qs-memory-chart"]["y"] < boxes["qs-rewards-chart"]["y"], boxes
    assert boxes["qs-rewards-chart"]["y"] == boxes["qs-margin-chart"]["y"], boxes
    page.set_viewport_size({"width": 800, "height": 1000})
    page.wait_for_function("() => document.querySelector('#qs-lr-chart').getBoundingClientRect().width > 600")
    lefts = {round(page.locator(f"#{chart}").bounding_box()["x"]) for chart in TRAIN_CHARTS}
    assert len(lefts) == 1, lefts


def test_the_command_box_is_as_tall_as_its_text(page):
    _preview_command(page)
    fit = page.evaluate(COMMAND_FIT)
    assert fit["box"] <= fit["text"] + 60, fit  # its label and padding, no empty lines


def test_compare_charts_and_table_read_well(page, runs, shoot):
    page.get_by_role("tab", name="Compare runs").click()
    boxes = page.locator("#qs-compare-runs")
    for run_id in runs.values():
        tick(boxes.locator(f'input[type=checkbox][name="{run_id}"]'))
    script = "() => (document.querySelector('#qs-compare-table') || {}).innerText?.includes('ROUGE-L')"
    page.wait_for_function(script, timeout=30_000)
    _chart_drawn(page, "qs-compare-extras", ("legend", "annotation", "ytick"))
    shoot(page, f"21-layout-compare-{page.viewport_size['width']}")
    problems = _problems(page, ("qs-compare-loss", "qs-compare-extras"))
    assert not problems, problems
    fit = page.evaluate(TABLE_FIT)
    assert "open in Evaluate" in fit["last_row"] and fit["client_height"] > 500, fit  # taller than Gradio's default
    assert fit["last_bottom"] <= fit["view_bottom"] + 1 and fit["scroll_height"] <= fit["client_height"] + 1, fit
