"""Weights & Biases: offline by default, the run written into RUN_DIR/wandb (`wandb sync` uploads it later);
online with the key from WANDB_API_KEY."""

from __future__ import annotations

import os
from pathlib import Path

from studio.tracking import base


class Tracker(base.Tracker):
    title = "W&B"
    artifacts = True

    def __init__(self, run: base.TrackedRun) -> None:
        os.environ.setdefault("WANDB_ERROR_REPORTING", "false")  # else W&B reports its own errors to its servers
        import wandb

        settings = wandb.Settings(
            console="off",  # worker.log has the output already
            x_disable_stats=True,  # the run's own gpu events are the system metrics
            save_code=False,
            disable_git=True,
            x_save_requirements=False,
            silent=True,
        )
        self.run = wandb.init(
            project=run.settings.project,
            name=run.name,
            dir=str(run.folder),
            mode=run.settings.wandb_mode,
            config={**run.config, "run": run.facts},
            settings=settings,
            reinit="create_new",
        )

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def log_artifact(self, path: Path, name: str) -> None:
        import wandb

        artifact = wandb.Artifact(name, type="model")
        artifact.add_dir(str(path))
        self.run.log_artifact(artifact)

    def finish(self, ok: bool) -> None:
        self.run.finish(exit_code=0 if ok else 1)

    def where(self) -> str:
        if self.run.settings.mode == "offline":
            return f"wandb sync {Path(self.run.dir).parent}"
        return str(self.run.url)
