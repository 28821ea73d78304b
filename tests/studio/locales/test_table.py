"""The translation table is whole: every entry in every language with the same placeholders, every key the code
says exists, every key is said somewhere, every config field has its label and help."""

from __future__ import annotations

import ast
import string
from pathlib import Path

import pytest

from studio.locales import ENGLISH, LANGUAGES, Message, in_language, say, table

ROOT = Path(__file__).resolve().parents[3]
SOURCES = sorted([*(ROOT / "studio").rglob("*.py"), *(ROOT / "app").rglob("*.py")])
# keys the code builds from a prefix and a name (a run's state, a phase, ...): app/i18n.py `named`
BUILT = ("state_", "phase_", "stage_", "eval_kind_", "judge_", "dev_", "kind_", "compare_col_", "data.stage_name_")


def _field_keys() -> set[str]:
    """`path` and `path.help` of every config field (studio/locales/fields.yaml), sections walked into."""
    from studio.config.base import Section
    from studio.config.run import RunConfig

    def walk(model: type[Section], prefix: str) -> set[str]:
        keys = set()
        for name, info in model.model_fields.items():
            inner = info.annotation
            if isinstance(inner, type) and issubclass(inner, Section):
                keys |= walk(inner, f"{prefix}{name}.")
            else:
                keys |= {f"{prefix}{name}", f"{prefix}{name}.help"}
        return keys

    return walk(RunConfig, "")


FIELD_KEYS = _field_keys()


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def test_every_entry_is_in_every_language_with_the_same_placeholders():
    problems = []
    for key, cells in table().items():
        expected = set(LANGUAGES) - ({ENGLISH} if key in FIELD_KEYS else set())
        if (
            not isinstance(cells, dict)
            or set(cells) != expected
            or not all(isinstance(v, str) and v for v in cells.values())
        ):
            problems.append(
                f"{key}: cells {sorted(cells) if isinstance(cells, dict) else cells!r}, want {sorted(expected)}"
            )
            continue
        shapes = {lang: _placeholders(text) for lang, text in cells.items()}
        if len({frozenset(s) for s in shapes.values()}) > 1:
            problems.append(f"{key}: placeholders differ {shapes}")
    assert not problems, "\n".join(problems)


def test_every_config_field_has_its_label_and_help():
    missing = sorted(FIELD_KEYS - set(table()))
    assert not missing, f"not in studio/locales/fields.yaml: {missing}"


def _said_keys() -> dict[str, str]:
    """Keys the code passes as a literal to say/Message/an error class/the page's table, with where."""
    said = {}
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "T":
                said.setdefault(node.attr, f"{path.relative_to(ROOT)}:{node.lineno}")
            if not isinstance(node, ast.Call) or not node.args:
                continue
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            first = node.args[0]
            if (name in {"say", "Message"} or name.endswith("Error")) and isinstance(first, ast.Constant):
                if isinstance(first.value, str) and "." in first.value and " " not in first.value:
                    said.setdefault(first.value, f"{path.relative_to(ROOT)}:{node.lineno}")
    return said


def test_every_key_the_code_says_is_in_the_table():
    unknown = {key: where for key, where in _said_keys().items() if key not in table() and not key.startswith("_")}
    unknown = {k: w for k, w in unknown.items() if not k[0].isupper()}  # T.SomeClass attributes are not keys
    assert not unknown, "\n".join(f"{where}: {key}" for key, where in sorted(unknown.items()))


def _constants() -> set[str]:
    found = set()
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.add(node.value)
            elif isinstance(node, ast.Attribute):
                found.add(node.attr)
    return found


def test_every_key_in_the_table_is_said_somewhere():
    constants = _constants()
    unused = [key for key in table() if key not in FIELD_KEYS and key not in constants and not key.startswith(BUILT)]
    assert not unused, f"keys no code says: {sorted(unused)}"


def test_a_message_is_its_english_and_renders_in_each_language_with_its_arguments_in_that_language():
    inner = say("run.not_found", run_id="r1")
    assert str(inner) == inner.text(ENGLISH) and inner.key == "run.not_found"
    for lang in LANGUAGES:
        assert in_language(inner, lang) == table()["run.not_found"][lang].format(run_id="r1")
    assert in_language("plain", "zh") == "plain"
    assert isinstance(inner, str) and isinstance(Message("run.not_found", run_id="x"), Message)


def test_an_unknown_key_is_a_bug_not_a_message():
    with pytest.raises(KeyError):
        say("no.such_key")


def _studio_error_classes(trees: list[ast.Module]) -> set[str]:
    classes, grew = {"StudioError"}, True
    while grew:
        grew = False
        for tree in trees:
            for node in ast.walk(tree):
                bases = {getattr(b, "id", getattr(b, "attr", "")) for b in getattr(node, "bases", [])}
                if isinstance(node, ast.ClassDef) and node.name not in classes and bases & classes:
                    classes.add(node.name)
                    grew = True
    return classes


def test_errors_and_messages_are_said_by_key_never_by_sentence():
    """A StudioError, say() or Message gets a key of the table as a literal: not English, not an f-string."""
    trees = {path: ast.parse(path.read_text(encoding="utf-8")) for path in SOURCES}
    speakers = _studio_error_classes(list(trees.values())) | {"say", "Message"}
    problems = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            first = node.args[0]
            if name in speakers and (
                isinstance(first, ast.JoinedStr) or (isinstance(first, ast.Constant) and first.value not in table())
            ):
                problems.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}({ast.unparse(first)[:60]})")
    assert not problems, "\n".join(problems)


def test_messages_and_errors_survive_copies_and_pickling_whole():
    """A history snapshot is a deep copy and a process pool pickles: both keep what a message was said from."""
    import copy
    import pickle

    from studio.errors import RunNotFound
    from studio.locales import Joined

    message = say("run.not_found", run_id="r1")
    for thing in (message, Joined("list.separator", [message, "plain"])):
        for again in (copy.copy(thing), copy.deepcopy(thing), pickle.loads(pickle.dumps(thing))):
            assert type(again) is type(thing) and str(again) == str(thing) and again.text("zh") == thing.text("zh")
    error = pickle.loads(pickle.dumps(RunNotFound("r2")))
    assert (
        isinstance(error, RunNotFound)
        and error.run_id == "r2"
        and error.text("zh") == say("run.not_found", run_id="r2").text("zh")
    )
