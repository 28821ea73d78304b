"""Benchmarks through lm-evaluation-harness: any task lm-eval knows, on the base and on an adapter.

The model is the one the chat engine already holds (a 4-bit base and its adapters work, nothing loads twice),
handed to lm-eval as its own `HFLM` model object; lm-eval's task definitions decide the prompts, the few-shot
examples and the metrics, so a number here is the number `lm_eval run` prints for the same model, adapter and
task. The studio ships one small local task group, `ceval_zh_demo` (data/benchmarks/), so the path runs on a
machine without the hub; a task whose data must come from the hub is refused by name when the hub is out of
reach. Task folders other than the bundled ones are never included: lm-eval task YAML may import Python
(`!function`), so a user's own task folder is code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.errors import StudioError
from studio.paths import BUNDLED_DATA_DIR

if TYPE_CHECKING:
    from studio.chat.engine import ChatEngine

BUNDLED_TASKS = BUNDLED_DATA_DIR / "benchmarks"
BENCHMARKS_FILE = "benchmarks.json"


class BenchmarkError(StudioError):
    """A benchmark that cannot run here: an unknown task, or one whose data is not on this machine."""


@dataclass
class BenchmarkRow:
    """One metric of one task (or of a group's aggregate) for every column."""

    task: str  # lm-eval's task or group name
    alias: str  # its display name (lm-eval's alias: subtasks indented under their group)
    metric: str  # e.g. acc, acc_norm, exact_match
    values: dict[str, float | None]  # column -> value
    stderr: dict[str, float | None] = field(default_factory=dict)
    group: bool = False


@dataclass
class BenchmarkReport:
    tasks: list[str]
    columns: list[str]
    rows: list[BenchmarkRow]
    fewshot: dict[str, int | None]  # task -> the few-shot count lm-eval used
    samples: dict[str, int]  # task -> questions scored
    raw: dict[str, Any]  # column -> lm-eval's own results (results, groups, n-shot, versions)

    def to_json(self) -> dict[str, Any]:
        return {
            "tasks": self.tasks,
            "columns": self.columns,
            "rows": [row.__dict__ for row in self.rows],
            "fewshot": self.fewshot,
            "samples": self.samples,
            "lm_eval": self.raw,
        }


@cache
def task_manager() -> Any:
    """lm-eval's task index with the bundled task folders added (built once: indexing reads every task YAML)."""
    from lm_eval.tasks import TaskManager

    folders = [str(folder) for folder in _bundled_folders()]
    return TaskManager(include_path=folders or None)


def bundled_tasks() -> list[str]:
    """The benchmarks shipped in data/benchmarks, each folder's group named as its folder, for the page's choice."""
    return [folder.name for folder in _bundled_folders()]


def _bundled_folders() -> list[Path]:
    return sorted(path for path in BUNDLED_TASKS.iterdir() if path.is_dir()) if BUNDLED_TASKS.is_dir() else []


def check_tasks(names: list[str]) -> list[str]:
    """The names, cleaned, each known to lm-eval (a task, group or tag); an unknown one is refused by name."""
    cleaned = [name.strip() for name in names if name.strip()]
    if not cleaned:
        raise BenchmarkError("evaluation.no_benchmark")
    known = set(task_manager().all_tasks)
    for name in cleaned:
        if name not in known:
            raise BenchmarkError("evaluation.unknown_benchmark", name=name, bundled=", ".join(bundled_tasks()))
    return cleaned


def run_benchmarks(
    engine: ChatEngine,
    names: list[str],
    columns: list[str | None],
    *,
    num_fewshot: int | None,
    limit: int | None,
    batch_size: int,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> BenchmarkReport:
    """Each column's (None: the base) lm-eval results on `names`, one after the other, through the engine's model."""
    tasks = check_tasks(names)
    raw: dict[str, Any] = {}
    for index, column in enumerate(columns):
        progress(index, len(columns))
        with engine.selected(column) as (model, tokenizer):
            raw[column or "base"] = _evaluate(model, tokenizer, tasks, num_fewshot, limit, batch_size)
    progress(len(columns), len(columns))
    return _report(tasks, [c or "base" for c in columns], raw)


def _evaluate(
    model: Any, tokenizer: Any, tasks: list[str], num_fewshot: int | None, limit: int | None, batch_size: int
) -> dict[str, Any]:
    import lm_eval
    from datasets.exceptions import DatasetNotFoundError
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    try:
        results = lm_eval.simple_evaluate(
            model=lm,
            tasks=tasks,
            num_fewshot=num_fewshot,
            limit=limit,
            task_manager=task_manager(),
            log_samples=False,
            bootstrap_iters=100,
        )
    except (ConnectionError, DatasetNotFoundError) as error:  # the task's data is on the hub, out of reach
        raise BenchmarkError(
            "evaluation.benchmark_data_missing", tasks=", ".join(tasks), error=_first_line(error)
        ) from None
    if results is None:  # lm-eval returns None on ranks other than 0; the studio runs one process
        raise RuntimeError("lm-eval returned no results")
    return {
        key: results.get(key, {}) for key in ("results", "groups", "group_subtasks", "n-shot", "n-samples", "versions")
    }


def _report(tasks: list[str], columns: list[str], raw: dict[str, Any]) -> BenchmarkReport:
    first = raw[columns[0]]
    rows: list[BenchmarkRow] = []
    for task, parent in _ordered_tasks(first):
        values = first["results"][task]
        alias = str(values.get("alias", task)).strip().removeprefix("- ")
        for key in _metric_keys(values):
            rows.append(
                BenchmarkRow(
                    task=task,
                    alias=f"{parent} › {alias}" if parent else alias,
                    metric=key.removesuffix(",none"),
                    values={c: _number(raw[c]["results"].get(task, {}).get(key)) for c in columns},
                    stderr={c: _number(raw[c]["results"].get(task, {}).get(_stderr_key(key))) for c in columns},
                    group=bool(first.get("group_subtasks", {}).get(task)),
                )
            )
    fewshot = {task: first.get("n-shot", {}).get(task) for task in first["results"]}
    samples = {task: int(n.get("effective", 0)) for task, n in first.get("n-samples", {}).items()}
    return BenchmarkReport(tasks, columns, rows, fewshot, samples, raw)


def _ordered_tasks(results: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(task, the group it is listed under) with each group before its subtasks, as lm-eval's own table shows them."""
    subtasks: dict[str, list[str]] = results.get("group_subtasks", {})
    nested = {task for members in subtasks.values() for task in members}
    ordered: list[tuple[str, str | None]] = []

    def visit(task: str, parent: str | None) -> None:
        if task in results["results"] and all(task != seen for seen, _ in ordered):
            ordered.append((task, parent))
        for member in subtasks.get(task, []):
            visit(member, task)

    for task in [*subtasks, *results["results"]]:
        if task not in nested:
            visit(task, None)
    return ordered


def _metric_keys(values: dict[str, Any]) -> list[str]:
    return [key for key in values if "," in key and "_stderr" not in key and key != "alias"]


def _stderr_key(key: str) -> str:
    metric, _, filtering = key.partition(",")
    return f"{metric}_stderr,{filtering}"


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__
