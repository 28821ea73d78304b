"""What each experiment tracker wrote, read back with that tracker's own reader, and what events.jsonl says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def recorded(events, kind: str, value: str) -> dict[int, float]:
    """{step: value} of the run's events of one type, as events.jsonl has them."""
    return {event.step: getattr(event, value) for event in events if event.type == kind}


def tensorboard_scalars(logdir: Path) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} from TensorBoard's own event reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    reader = EventAccumulator(str(logdir), size_guidance={"scalars": 0})  # 0: every point, not a sample
    reader.Reload()
    return {tag: {e.step: e.value for e in reader.Scalars(tag)} for tag in reader.Tags()["scalars"]}


def mlflow_run(store: Path, project: str, run_name: str):
    """(client, run) of the run named `run_name` in MLflow's local file store, through MLflow's own client."""
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=store.resolve().as_uri())
    experiment = client.get_experiment_by_name(project)
    [run] = client.search_runs([experiment.experiment_id], filter_string=f"attributes.run_name = '{run_name}'")
    return client, run


def mlflow_metric(client, run, name: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run.info.run_id, name)}


def wandb_records(run_folder: Path) -> list[dict]:
    """The records of the run's offline .wandb file, as W&B's own inspector prints them."""
    [log] = run_folder.glob("wandb/offline-run-*/run-*.wandb")
    command = [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(log)]
    printed = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout
    return [json.loads(line) for line in printed.splitlines() if line.strip()]


def swanlab_records(run_folder: Path) -> list:
    """The records of the run's offline .swanlab file, read by SwanLab's own data store reader."""
    from swanlab.proto.swanlab.record.v1.record_pb2 import Record
    from swanlab.sdk.internal.core_python.store import DataStoreReader

    [log] = run_folder.glob("swanlog/run-*/run-*.swanlab")
    reader, records = DataStoreReader(), []
    reader.open(str(log))
    while (data := reader.scan()) is not None:
        record = Record()
        record.ParseFromString(data)
        records.append(record)
    return records


_TRACKIO = """
import json, sys
from trackio.sqlite_storage import SQLiteStorage
project, run = sys.argv[1:]
logs, config = SQLiteStorage.get_logs(project, run), SQLiteStorage.get_run_config(project, run)
print(json.dumps({"logs": logs, "config": config, "artifacts": SQLiteStorage.get_artifacts(project)}))
"""


def trackio_run(trackio_dir: Path, project: str, run_name: str) -> dict:
    """{"logs": [...], "config": {...}, "artifacts": [the project's]} of a Trackio run, by Trackio's own storage
    (in a process of its own: trackio reads TRACKIO_DIR once, when it is imported)."""
    env = {**os.environ, "TRACKIO_DIR": str(trackio_dir)}
    command = [sys.executable, "-c", _TRACKIO, project, run_name]
    printed = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True, env=env).stdout
    return json.loads(printed.strip().splitlines()[-1])
