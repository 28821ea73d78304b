"""Driving the config form in a real browser, field by field path: reveal, set, read back.

The test builds the same page locally (app.server.build_page) to learn every control, its
type and where it sits (tab, accordion); the browser then finds it by its elem_id.
"""

from __future__ import annotations

import typing

import gradio as gr

from app.form import FieldControl, _core_type


def location(component) -> list[tuple[str, str]]:
    """(kind, English label) of the tabs and accordions around a component, outermost first."""
    chain, block = [], component
    while block is not None:
        if isinstance(block, (gr.Tab, gr.Accordion)):
            chain.append((type(block).__name__, block.label))
        block = getattr(block, "parent", None)
    return list(reversed(chain))


def reveal(page, component) -> None:
    """Open the tab and accordions that hold `component`, so the browser renders it."""
    for kind, label in location(component):
        if kind == "Tab":
            tab = page.get_by_role("tab", name=label, exact=True)
            if tab.get_attribute("aria-selected") != "true":
                tab.click()
                page.wait_for_timeout(300)  # its components mount, then take their values
        else:
            header = page.locator("button.label-wrap").filter(has=page.locator(f"span:text-is('{label}')")).first
            if "open" not in (header.get_attribute("class") or ""):
                header.click()
                page.wait_for_timeout(300)
    page.locator(f"#{component.elem_id}").first.wait_for(timeout=10_000)


def changed_value(control: FieldControl, default):
    """A valid value different from `default`, as the control shows it."""
    kind, optional = _core_type(control.info.annotation)
    if typing.get_origin(kind) is typing.Literal:
        return next(choice for choice in typing.get_args(kind) if choice != default)
    if kind is bool:
        return not default
    if kind in (int, float) and optional:
        return "32" if kind is int else "8.0"
    if kind is int:
        return default + 1
    if kind is float:  # up, unless that leaves the field's range (gamma, lambda: at most 1)
        ceiling = min((getattr(m, "le", None) or getattr(m, "lt", None) or float("inf")) for m in control.info.metadata)
        return round(default + 0.05 if default + 0.05 < ceiling else default - 0.05, 6)
    if typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind)
        if typing.get_origin(item) is typing.Literal:  # a choice of fixed values (evaluation.task_metrics)
            return list(default) + [next(choice for choice in typing.get_args(item) if choice not in default)]
        return ["identity"] if isinstance(control.component, gr.Textbox) else list(default) + ["sharegpt_zh_demo"]
    return {
        "model.name_or_path": "Qwen/Qwen1.5-0.5B-Chat",
        "export.max_shard_size": "3GB",
        "name": "roundtrip",
        "training.devices": "cpu",
    }.get(control.path, (default or "") + "-changed")


def set_value(page, control: FieldControl, value) -> None:
    box = page.locator(f"#{control.component.elem_id}").first
    component = control.component
    if isinstance(component, gr.Checkbox):
        checkbox = box.locator("input[type=checkbox]")
        if checkbox.is_checked() != value:
            checkbox.click()
    elif isinstance(component, gr.Dropdown) and component.multiselect:
        field = box.locator("input")
        for item in value:
            if item not in read_value(page, control):
                field.click()
                field.fill(item)
                field.press("Enter")
        page.keyboard.press("Escape")
    elif isinstance(component, gr.Dropdown):
        field = box.locator("input")
        field.click()
        field.fill(str(value))
        field.press("Enter")
        page.keyboard.press("Escape")
    else:
        field = box.locator("textarea, input").first
        field.fill(", ".join(value) if isinstance(value, list) else str(value))
        field.press("Tab")


def read_value(page, control: FieldControl):
    box = page.locator(f"#{control.component.elem_id}").first
    component = control.component
    if isinstance(component, gr.Checkbox):
        return box.locator("input[type=checkbox]").is_checked()
    if isinstance(component, gr.Dropdown) and component.multiselect:
        return [token.strip() for token in box.locator(".token span").all_inner_texts()]
    text = box.locator("textarea, input").first.input_value()
    if isinstance(component, gr.Number):
        return float(text) if "." in text or "e" in text else int(text)
    return text


def shown(control: FieldControl, value):
    """How `value` reads back from the control (numbers as numbers, lists as the textbox shows them)."""
    if isinstance(control.component, gr.Textbox) and isinstance(value, list):
        return ", ".join(value)
    return value


def start_and_finish(page, timeout_ms: int = 300_000) -> str:
    """Start the run the form holds; its run id once the progress box shows that run finished."""
    runs = page.locator("#qs-runs input")
    before = runs.input_value()
    page.locator("#qs-start").click()
    page.wait_for_function(  # a Start picks its new run
        "before => (document.querySelector('#qs-runs input') || {}).value !== before", arg=before, timeout=120_000
    )
    run_id = runs.input_value()
    # this run finished: the box names its run, and until the next poll it still shows the run before (finished)
    page.wait_for_function(
        "id => { const box = document.querySelector('#qs-progress');"
        " return !!box && box.innerText.includes(id) && !!box.querySelector('.qs-state.qs-finished'); }",
        arg=run_id,
        timeout=timeout_ms,
    )
    return run_id


def tick(box, tries: int = 10) -> None:
    """Check a checkbox (a locator) that a poll may redraw: a click that lands as it redraws is lost ("did not change
    its state"), so it is tried again until the box stays checked."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import expect

    for _ in range(tries):
        try:
            box.check(timeout=10_000)
        except PlaywrightError:
            box.page.wait_for_timeout(500)
            continue
        if box.is_checked():
            return
    expect(box).to_be_checked(timeout=1_000)
