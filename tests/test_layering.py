"""The layers: `studio/` is the backend and never imports the UI or gradio; `app/` reaches the backend only
through its front door (studio.api) and the few modules that describe what it shows."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# what the UI may import from the backend: the front door, the typed config, the error type,
# the folded run history it draws, and the serving flags it shares with `qlora-studio webui`
APP_MAY_IMPORT = {
    "studio.api",
    "studio.config",
    "studio.config.base",
    "studio.config.recipes",
    "studio.errors",
    "studio.monitoring",
    "studio.serving",
    "studio.text",
}


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_studio_never_imports_app_or_gradio():
    offenders = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in (ROOT / "studio").rglob("*.py")
        for name in _imports(path)
        if name.split(".")[0] in ("app", "gradio")
    }
    assert not offenders


def test_app_uses_the_front_door():
    offenders = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in (ROOT / "app").rglob("*.py")
        for name in _imports(path)
        if name.split(".")[0] == "studio" and name not in APP_MAY_IMPORT
    }
    assert not offenders
