"""A sweep planned: one validated RunConfig per run, named after the values it varies.

    plan = plan_sweep(base_config, spec)   # SweepError before anything is queued when any run cannot be
    [run.name for run in plan.runs]        # ['sft-demo-lr1e-4-r8', 'sft-demo-lr1e-4-r16', ...]

Every run's config goes through the config's own validation (RunConfig.with_overrides) here, so a bad value or
combination is refused with the field and value named, and the sweep queues all its runs or none.
"""

from __future__ import annotations

import itertools
import random
import re
import typing
from dataclasses import dataclass

from pydantic import BaseModel

from studio.config import RunConfig
from studio.config.base import ConfigError, Section
from studio.locales import Joined
from studio.sweeps.spec import Axis, SweepError, SweepSpec

NAME_LIMIT = 120  # the run folder adds -DATE-TIME; file names stop at 255 bytes
SHOWN_PROBLEMS = 6  # a random sweep's bad range would otherwise list every draw
# how a run name shows a field; any other field by its own name ('' shows the value alone: a choice names itself)
SHORT = {
    "training.learning_rate": "lr",
    "lora.rank": "r",
    "lora.alpha": "alpha",
    "lora.dropout": "drop",
    "training.batch_size": "bs",
    "training.gradient_accumulation_steps": "ga",
    "training.num_epochs": "ep",
    "training.max_steps": "steps",
    "training.warmup_ratio": "warmup",
    "training.weight_decay": "wd",
    "training.seed": "seed",
    "training.lr_scheduler": "",
    "data.cutoff_len": "len",
    "finetuning.method": "",
    "optimizer.name": "",
    "quantization.method": "",
}
_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")


@dataclass
class PlannedRun:
    index: int  # its place in the sweep and in the queue
    name: str  # the run's `name`: its folder is NAME-DATE-TIME
    varied: dict[str, str]  # field path -> the value it trains with, as written
    config: RunConfig


@dataclass
class SweepPlan:
    spec: SweepSpec
    prefix: str  # what every run's name starts with: the base config's run name
    runs: list[PlannedRun]

    @property
    def axes(self) -> list[str]:
        """The fields that vary from run to run, in the spec's order."""
        return [axis.path for axis in self.spec.axes if axis.varies]

    def table(self) -> list[tuple[str, list[str]]]:
        """(column id, one cell per run): '#', 'run', then each varied field."""
        columns = [("#", [str(run.index + 1) for run in self.runs]), ("run", [run.name for run in self.runs])]
        return columns + [(path, [run.varied.get(path, "–") for run in self.runs]) for path in self.axes]


def plan_sweep(base: RunConfig, spec: SweepSpec) -> SweepPlan:
    """Every run of the sweep, validated; SweepError naming each field and value that cannot train."""
    lists = {axis.path for axis in spec.axes if check_path(axis.path)}
    fixed = {axis.path: axis.values[0] for axis in spec.axes if not axis.varies}
    varying = [axis for axis in spec.axes if axis.varies]
    combinations = _random(varying, spec) if spec.mode == "random" else _grid(varying)
    names = _names(base.run_name, varying, combinations)
    runs, problems = [], {}
    for index, (name, varied) in enumerate(zip(names, combinations)):
        try:
            config = base.with_overrides(
                {path: _listed(v) if path in lists else v for path, v in {**fixed, **varied}.items()}
            )
            config.name = name  # assigned, not read as YAML: a name of digits stays text
        except ConfigError as error:  # the same bad value in many runs is said once
            problems.update({str(problem): problem for problem in error.problems})
            continue
        runs.append(PlannedRun(index, name, varied, config))
    if problems:
        shown = list(problems.values())[:SHOWN_PROBLEMS]
        bad = len(combinations) - len(runs)
        raise SweepError("sweeps.runs_refused", bad=bad, total=len(combinations), problems=Joined("list.lines", shown))
    return SweepPlan(spec, base.run_name, runs)


def check_path(path: str) -> bool:
    """A field of the run config that a sweep may set: not a section, not the run's name (the sweep names runs).
    True when the field holds a list."""
    model: type[BaseModel] = RunConfig
    *sections, leaf = path.split(".")
    for section in sections:
        inner = model.model_fields.get(section)
        kind = inner.annotation if inner else None
        if not (isinstance(kind, type) and issubclass(kind, Section)):
            raise SweepError("sweeps.unknown_field", path=path)
        model = kind
    info = model.model_fields.get(leaf)
    if info is None or (isinstance(info.annotation, type) and issubclass(info.annotation, Section)):
        raise SweepError("sweeps.unknown_field", path=path)
    if path == "name":
        raise SweepError("sweeps.name_not_varied")
    return typing.get_origin(info.annotation) is list


def _listed(value: str) -> str:
    """A list field's value: `a` is the list [a] (each run one dataset), `[a, b]` as written."""
    return value if value.strip().startswith("[") else f"[{value}]"


def _grid(axes: list[Axis]) -> list[dict[str, str]]:
    """Every combination, the last field changing fastest (as the page lists them)."""
    paths = [axis.path for axis in axes]
    return [dict(zip(paths, values)) for values in itertools.product(*(axis.values for axis in axes))]


def _random(axes: list[Axis], spec: SweepSpec) -> list[dict[str, str]]:
    """`count` runs, each field drawn independently: a range within its ends, a list of values one of them."""
    rng = random.Random(spec.seed)
    return [
        {axis.path: axis.draw(rng) if axis.is_range else rng.choice(axis.values) for axis in axes}
        for _ in range(spec.count)
    ]


def _names(prefix: str, axes: list[Axis], combinations: list[dict[str, str]]) -> list[str]:
    """PREFIX-lr2e-4-r16 per run: short, safe as a folder name; a repeated name gets -2, -3."""
    labels = _labels([axis.path for axis in axes])
    names: list[str] = []
    seen: dict[str, int] = {}
    for varied in combinations:
        parts = [f"{labels[path]}{_safe(value)}" for path, value in varied.items()]
        suffix = "-".join(part for part in parts if part)
        name = f"{prefix[: max(8, NAME_LIMIT - len(suffix) - 1)]}-{suffix}" if suffix else prefix
        name = name[:NAME_LIMIT]
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return names


def _labels(paths: list[str]) -> dict[str, str]:
    """Each field's label in names; fields that would share one are told apart by their section."""
    labels = {path: SHORT.get(path, path.rsplit(".", 1)[-1]) for path in paths}
    taken = [label for label in labels.values() if label]
    for path, label in labels.items():
        if label and taken.count(label) > 1:
            labels[path] = path.replace(".", "_")
    return {path: _safe(label) for path, label in labels.items()}


def _safe(text: str) -> str:
    """Letters, digits, '.' and '-'; anything else becomes '_' (a run name's pattern allows no more)."""
    return _UNSAFE.sub("_", text.strip().strip("\"'[]{}")).strip("_")
