"""`studio/` is the backend: it never imports the UI package or gradio."""

import ast
from pathlib import Path

STUDIO = Path(__file__).resolve().parent.parent / "studio"


def _imported_roots(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module.split(".")[0]


def test_studio_never_imports_app_or_gradio():
    offenders = {
        f"{path.relative_to(STUDIO.parent)} imports {root}"
        for path in STUDIO.rglob("*.py")
        for root in _imported_roots(path)
        if root in ("app", "gradio")
    }
    assert not offenders
