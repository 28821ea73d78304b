"""The trackers by name: the package each needs (its pip extra), the key an online mode needs, its module.

Looked up before a run starts (cheap: nothing is imported), so a missing package or key is a user error at Start
rather than a warning halfway through training.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass

from studio.config.reporting import ReportingConfig
from studio.errors import StudioError
from studio.tracking.base import Tracker


@dataclass(frozen=True)
class TrackerSpec:
    name: str  # as report_to names it, and the pip extra: pip install 'qlora-studio[NAME]'
    package: str  # the module its package installs
    module: str  # the studio module whose `Tracker` class reports to it
    mode_field: str | None = None  # the logging field that turns on its online mode
    key_variable: str | None = None  # the environment variable its online mode reads the key from

    def installed(self) -> bool:
        try:
            return importlib.util.find_spec(self.package) is not None
        except (ImportError, ValueError):  # a parent package that fails to import, or a module set to None
            return False

    def load(self) -> type[Tracker]:
        return importlib.import_module(self.module).Tracker


TRACKERS = {
    spec.name: spec
    for spec in (
        TrackerSpec("tensorboard", "tensorboard", "studio.tracking.trackers.tensorboard"),
        TrackerSpec("mlflow", "mlflow", "studio.tracking.trackers.mlflow"),
        TrackerSpec("wandb", "wandb", "studio.tracking.trackers.wandb", "wandb_mode", "WANDB_API_KEY"),
        TrackerSpec("swanlab", "swanlab", "studio.tracking.trackers.swanlab", "swanlab_mode", "SWANLAB_API_KEY"),
        TrackerSpec("trackio", "trackio", "studio.tracking.trackers.trackio"),
    )
}


def check_trackers(settings: ReportingConfig) -> None:
    """Refuse a run whose trackers cannot start: a package that is not installed, an online mode without its key."""
    for name in settings.report_to:
        spec = TRACKERS[name]
        if not spec.installed():
            raise StudioError("tracking.package_missing", name=name, package=spec.package)
        online = spec.mode_field is not None and getattr(settings, spec.mode_field) == "online"
        if online and spec.key_variable and not os.environ.get(spec.key_variable):
            raise StudioError(
                "tracking.online_needs_key", name=name, field=f"logging.{spec.mode_field}", variable=spec.key_variable
            )
