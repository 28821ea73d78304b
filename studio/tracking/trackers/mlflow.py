"""MLflow: a run in experiment `logging.project` of the tracking server or store, the adapter as its artifact.

Without a server the store is local: MLflow's file store in RUNS_DIR/mlruns (MLflow 3's default, SQLite, needs
SQLAlchemy, which mlflow-skinny does not bring; the file store needs only the client)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from studio.tracking import base

PARAMS_PER_BATCH = 100  # MLflow's limit for one log_batch call


def tracking_uri(run: base.TrackedRun) -> str:
    """The field, else MLFLOW_TRACKING_URI, else the local file store beside the runs."""
    given = run.settings.mlflow_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    return given or (run.runs_dir / "mlruns").resolve().as_uri()


def _quiet_environment(uri: str) -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if uri.startswith("file:") or "://" not in uri:
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3 refuses its file store unless told it is meant
    else:  # a server that is down costs seconds once, not minutes of retries at every step
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


class Tracker(base.Tracker):
    title = "MLflow"
    artifacts = True

    def __init__(self, run: base.TrackedRun) -> None:
        self.uri = tracking_uri(run)
        _quiet_environment(self.uri)
        from mlflow import MlflowClient
        from mlflow.entities import Param

        self.client = MlflowClient(tracking_uri=self.uri)
        experiment_id = self._experiment(run.settings.project)
        tags = {"qlora_studio.run_folder": str(run.folder)}
        self.run_id = self.client.create_run(experiment_id, run_name=run.name, tags=tags).info.run_id
        params = [Param(key, value) for key, value in run.params().items()]
        for start in range(0, len(params), PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=params[start : start + PARAMS_PER_BATCH])

    def _experiment(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name)
        except MlflowException:  # another run created it a moment ago
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def log(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(name, value, now, step) for name, value in metrics.items()])

    def log_artifact(self, path: Path, name: str) -> None:
        self.client.log_artifacts(self.run_id, str(path), artifact_path=path.name)

    def finish(self, ok: bool) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if ok else "FAILED")

    def where(self) -> str:
        prefix = "MLFLOW_ALLOW_FILE_STORE=true " if os.environ.get("MLFLOW_ALLOW_FILE_STORE") == "true" else ""
        return f"{prefix}mlflow ui --backend-store-uri {self.uri} (run {self.run_id})"
