"""The interface every tracker module implements, and the run as the trackers see it."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from studio.config.reporting import ReportingConfig

# MLflow refuses longer parameter values; the others take them, so one limit keeps the trackers alike
MAX_PARAM_CHARS = 500


@dataclass(frozen=True)
class TrackedRun:
    """A run as it starts training: its folder, its config and the facts its `started` event gave."""

    folder: Path
    settings: ReportingConfig
    config: dict[str, Any]  # the RunConfig as JSON, nested by section
    facts: dict[str, Any] = field(default_factory=dict)  # device, method, parameter and example counts, ...

    @property
    def name(self) -> str:
        """The run folder's name: unique, and what the studio's lists call the run."""
        return self.folder.name

    @property
    def runs_dir(self) -> Path:
        return self.folder.parent

    def params(self) -> dict[str, str]:
        """The config as flat `section.field` parameters, with the run's facts under `run.`, as text."""
        flat = dict(_flatten(self.config))
        flat.update({f"run.{key}": value for key, value in self.facts.items()})
        return {key: _text(value)[:MAX_PARAM_CHARS] for key, value in flat.items()}


class Tracker(ABC):
    """One tracker's run. Constructing it starts the run (params included); every method may raise: the relay
    logs the first failure and stops calling it."""

    title: ClassVar[str]  # the tracker's own name, as people write it
    artifacts: ClassVar[bool] = False  # whether it keeps files (the adapter) beside the metrics

    @abstractmethod
    def __init__(self, run: TrackedRun) -> None: ...

    @abstractmethod
    def log(self, metrics: dict[str, float], step: int) -> None: ...

    def log_artifact(self, path: Path, name: str) -> None:
        """Keep the folder `path` (the adapter) with the run, as `name`; trackers without artifacts keep nothing."""
        return None

    @abstractmethod
    def finish(self, ok: bool) -> None: ...

    @abstractmethod
    def where(self) -> str:
        """Where it wrote, as the command that shows it (said once in the run's log)."""


def _flatten(values: dict[str, Any], prefix: str = ""):
    for key, value in values.items():
        if isinstance(value, dict) and value:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
