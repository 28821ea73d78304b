"""The layers, as the tree shows them.

- `studio/` is the backend and never imports the UI or gradio; `app/` reaches the backend only through its front
  door (studio.api) and the few modules that describe what it shows.
- `studio/locales/` is the one translation table and the way to say things: a leaf, it imports nothing of studio.
- `studio/runs/` is the run record both processes read and write: a leaf above `config`.
- `studio/control/` is the supervisor (web server and CLI side): it reaches the worker only through
  `python -m studio.worker`, so it never imports the worker, training, model loading, chat or export code, and
  importing the front door does not load torch.
- The worker's building blocks (config, data, modeling, training, runs) never import the supervisor's or the
  front door's modules, nor chat, evaluation or export, which are built on them.
- Nothing in the product imports the test-model builders of `studio/dev/`.
- No import circles anywhere in `studio/`, counting imports inside functions.

Every import counts, inside functions too: a lazy import is still a dependency.
"""

import ast
import re
import subprocess
import sys
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
    "studio.runs.history",
    "studio.runs.text",
    "studio.locales",
    "studio.serving",
}


RULES = {  # a package of studio -> the modules of studio it may not import (a name and everything under it)
    "studio.locales": lambda name: not name.startswith("studio.locales"),
    "studio.runs": lambda name: (
        not name.startswith(("studio.runs", "studio.config", "studio.errors", "studio.locales"))
    ),
    "studio.control": lambda name: name.startswith(
        ("studio.worker", "studio.training", "studio.modeling.loader", "studio.chat", "studio.export")
    ),
    **{
        side: lambda name: name.startswith(
            ("studio.control", "studio.api", "studio.cli", "studio.chat", "studio.evaluation", "studio.export")
        )
        for side in ("studio.config", "studio.data", "studio.modeling", "studio.training")
    },
}


def _modules() -> dict[str, Path]:
    """Every module of studio/ by its dotted name (a package by its own name)."""
    found = {}
    for path in (ROOT / "studio").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _studio_imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of studio that `path` imports (`from package import module` names the module)."""
    found = set()
    for name in _imports(path, with_names=True):
        if name in modules:
            found.add(name)
    return found


def _imports(path: Path, with_names: bool = False):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            if with_names:
                yield from (f"{node.module}.{alias.name}" for alias in node.names)


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


def test_each_package_imports_only_what_its_layer_may():
    modules = _modules()
    offenders = {
        f"{name} imports {target}"
        for name, path in modules.items()
        for package, forbidden in RULES.items()
        if name == package or name.startswith(package + ".")
        for target in _studio_imports(path, modules)
        if forbidden(target)
    }
    assert not offenders


def test_nothing_in_the_product_imports_the_test_model_builders():
    modules = _modules()
    offenders = {
        f"{name} imports {target}"
        for name, path in modules.items()
        if not name.startswith("studio.dev")
        for target in _studio_imports(path, modules)
        if target.startswith("studio.dev")
    }
    assert not offenders


def test_no_import_circles_in_studio():
    modules = _modules()
    graph = {name: _studio_imports(path, modules) - {name} for name, path in modules.items()}
    circles = []
    for start in graph:  # a module that can reach itself again through what it imports
        seen, todo = set(), list(graph[start])
        while todo:
            name = todo.pop()
            if name == start:
                circles.append(start)
                break
            if name not in seen:
                seen.add(name)
                todo.extend(graph[name])
    assert not circles


def test_the_front_door_does_not_load_torch():
    """The page and the CLI start without torch: it is the worker's (and chat's, once a model is loaded)."""
    probe = "import sys, studio.api, studio.cli; print(sorted({'torch', 'transformers', 'peft'} & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    assert loaded.stdout.strip() == "[]"


def test_the_architecture_document_names_every_module_and_only_those():
    document = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"(?<![\w/])studio/[\w/]+\.py", document))
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "studio").rglob("*.py") if p.name != "__init__.py"}
    assert not modules - named, "docs/architecture.md misses these"
    assert not named - modules, "docs/architecture.md names modules that do not exist"
