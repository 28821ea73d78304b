"""Trackio: a local SQLite database in RUNS_DIR/trackio (or TRACKIO_DIR), shown by `trackio show`."""

from __future__ import annotations

import os
from pathlib import Path

from studio.tracking import base


class Tracker(base.Tracker):
    title = "Trackio"
    artifacts = True

    def __init__(self, run: base.TrackedRun) -> None:
        # read when trackio is imported: set first (the worker imports it here and nowhere else)
        os.environ.setdefault("TRACKIO_DIR", str((run.runs_dir / "trackio").resolve()))
        import trackio

        self.project = run.settings.project
        self.run = trackio.init(
            project=self.project,
            name=run.name,
            config={**run.config, "run": run.facts},
            resume="allow",  # a resumed attempt goes on in the same Trackio run
            embed=False,
            auto_log_gpu=False,  # the run's own gpu events are the system metrics
            auto_log_cpu=False,
        )

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def log_artifact(self, path: Path, name: str) -> None:
        import trackio

        artifact = trackio.Artifact(name, type="model")
        artifact.add_dir(str(path))
        self.run.log_artifact(artifact)

    def finish(self, ok: bool) -> None:
        self.run.finish()

    def where(self) -> str:
        return f"TRACKIO_DIR={os.environ['TRACKIO_DIR']} trackio show --project {self.project}"
