"""TensorBoard: event files in RUN_DIR/tensorboard (`tensorboard --logdir RUNS_DIR` shows every run)."""

from __future__ import annotations

import yaml

from studio.tracking import base

FLUSH_SECS = 5  # a run being watched shows its newest steps within seconds


class Tracker(base.Tracker):
    title = "TensorBoard"

    def __init__(self, run: base.TrackedRun) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.logdir = run.folder / "tensorboard"
        # a resumed attempt replaces the steps after its checkpoint, as in the run's own charts
        purge = run.facts.get("start_step") or None
        self.writer = SummaryWriter(str(self.logdir), purge_step=purge, flush_secs=FLUSH_SECS)
        text = yaml.safe_dump({**run.config, "run": run.facts}, sort_keys=False, allow_unicode=True)
        self.writer.add_text("config", "".join(f"    {line}\n" for line in text.splitlines()))  # Markdown code

    def log(self, metrics: dict[str, float], step: int) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)

    def finish(self, ok: bool) -> None:
        self.writer.close()

    def where(self) -> str:
        return f"tensorboard --logdir {self.logdir}"
