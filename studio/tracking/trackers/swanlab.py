"""SwanLab: offline by default, the run written into RUN_DIR/swanlog (`swanlab sync` uploads it later); online
with the key from SWANLAB_API_KEY."""

from __future__ import annotations

from pathlib import Path

from studio.tracking import base


class Tracker(base.Tracker):
    title = "SwanLab"
    artifacts = True

    def __init__(self, run: base.TrackedRun) -> None:
        import swanlab

        self.mode = run.settings.swanlab_mode
        settings = swanlab.Settings(
            mode=self.mode,
            log_dir=run.folder / "swanlog",
            interactive=False,  # a worker has no one to answer a login prompt
            terminal=swanlab.Settings.Terminal(proxy_type="none"),  # worker.log has the output already
            probe=swanlab.Settings.Probe(monitor=False, requirements=False, git=False),
        )
        self.run = swanlab.init(
            project=run.settings.project,
            name=run.name,
            config={**run.config, "run": run.facts},
            settings=settings,
            reinit=True,
        )

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def log_artifact(self, path: Path, name: str) -> None:
        self.run.save(str(path / "*"), base_path=str(path.parent), policy="now")

    def finish(self, ok: bool) -> None:
        self.run.finish(state="success" if ok else "crashed", error=None if ok else "the run did not finish")

    def where(self) -> str:
        if self.mode == "offline":
            return f"swanlab sync {self.run.dir}"
        return str(self.run.url)
