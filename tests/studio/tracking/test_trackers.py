"""A real run of the tiny model reporting to all five trackers: what each wrote, read back with that tracker's own
reader, is what events.jsonl records (the curves, the config as parameters, the adapter as an artifact)."""

import subprocess
import sys

import pytest

from tests.support import run_worker
from tests.support.trackers import (
    mlflow_metric,
    mlflow_run,
    recorded,
    swanlab_records,
    tensorboard_scalars,
    trackio_run,
    wandb_records,
)

PROJECT = "tiny-project"


@pytest.fixture(scope="module")
def reported(tmp_path_factory, tiny_model_dir):
    """(folder, events) of a 4-step run evaluated at steps 2 and 4, reported to every tracker."""
    runs = tmp_path_factory.mktemp("runs")
    home = tmp_path_factory.mktemp("wandb-home")  # W&B stages artifacts in its data folder: not the user's home
    env = {"WANDB_DATA_DIR": str(home / "data"), "WANDB_CACHE_DIR": str(home / "cache"), "WANDB_CONFIG_DIR": str(home)}
    return run_worker(
        runs / "all-trackers",
        tiny_model_dir,
        env=env,
        **{"logging.report_to": "[tensorboard, mlflow, wandb, swanlab, trackio]", "logging.project": PROJECT},
    )


def test_every_tracker_started_and_said_where_it_writes(reported):
    folder, events = reported
    assert events[-1].type == "finished"
    said = [e.message for e in events if e.type == "log"]
    assert not [e for e in events if e.type == "log" and e.level == "warning"], said
    expected = {
        "TensorBoard": f"tensorboard --logdir {folder.path / 'tensorboard'}",
        "MLflow": f"mlflow ui --backend-store-uri {(folder.path.parent / 'mlruns').as_uri()}",
        "W&B": f"wandb sync {folder.path / 'wandb'}/offline-run-",
        "SwanLab": f"swanlab sync {folder.path / 'swanlog'}/run-",
        "Trackio": f"TRACKIO_DIR={folder.path.parent / 'trackio'} trackio show --project {PROJECT}",
    }
    for title, command in expected.items():
        assert any(m.startswith(f"{title} receives this run's metrics: ") and command in m for m in said), title


def test_tensorboard_event_files_hold_every_step_and_evaluation(reported):
    folder, events = reported
    scalars = tensorboard_scalars(folder.path / "tensorboard")
    for tag, kind, value in [
        ("train/loss", "step", "loss"),
        ("train/learning_rate", "step", "learning_rate"),
        ("system/rss_mib", "step", "rss_mib"),
        ("eval/loss", "eval", "eval_loss"),
    ]:
        expected = recorded(events, kind, value)
        assert scalars[tag] == pytest.approx(expected, rel=1e-6), tag  # TensorBoard keeps float32
    assert sorted(scalars["train/loss"]) == [1, 2, 3, 4] and sorted(scalars["eval/loss"]) == [2, 4]


def test_mlflow_run_holds_the_curves_the_config_and_the_adapter(reported):
    folder, events = reported
    client, run = mlflow_run(folder.path.parent / "mlruns", PROJECT, folder.run_id)
    assert mlflow_metric(client, run, "train/loss") == recorded(events, "step", "loss")
    assert mlflow_metric(client, run, "eval/loss") == recorded(events, "eval", "eval_loss")
    assert mlflow_metric(client, run, "train/tokens_per_second") == recorded(events, "step", "tokens_per_second")
    [started] = [e for e in events if e.type == "started"]
    params = run.data.params
    assert params["training.learning_rate"] == "0.01" and params["logging.project"] == PROJECT
    assert params["run.trainable_params"] == str(started.trainable_params) and params["run.device"] == "cpu"
    assert run.info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "adapter")}
    assert {"adapter/adapter_model.safetensors", "adapter/adapter_config.json"} <= artifacts


def test_wandb_offline_run_holds_the_history_the_config_and_the_adapter(reported):
    folder, events = reported
    records = wandb_records(folder.path)
    history = [r["history"]["item"] for r in records if r["type"] == "history"]
    assert {h["_step"]: h["train/loss"] for h in history} == recorded(events, "step", "loss")
    assert {h["_step"]: h["eval/loss"] for h in history if "eval/loss" in h} == recorded(events, "eval", "eval_loss")
    [run] = [r["run"] for r in records if r["type"] == "run"]
    assert run["display_name"] == folder.run_id and run["project"] == PROJECT
    assert run["config"]["update"]["training"]["learning_rate"] == 0.01
    [artifact] = [r["artifact"] for r in records if r["type"] == "artifact"]
    assert artifact["name"] == f"{folder.run_id}-adapter" and artifact["type"] == "model"
    assert "adapter_model.safetensors" in {entry["path"] for entry in artifact["manifest"]["contents"]}
    assert [r["exit"]["exit_code"] for r in records if r["type"] == "exit"] == [0]


def test_swanlab_offline_run_holds_the_scalars_and_the_adapter(reported):
    folder, events = reported
    records = swanlab_records(folder.path)
    kinds = [r.WhichOneof("record_type") for r in records]
    scalars: dict[str, dict[int, float]] = {}
    for record in records:
        if record.WhichOneof("record_type") == "scalar":
            scalars.setdefault(record.scalar.key, {})[record.scalar.step] = record.scalar.value.number
    assert scalars["train/loss"] == recorded(events, "step", "loss")
    assert scalars["eval/loss"] == recorded(events, "eval", "eval_loss")
    [start] = [r.start for r in records if r.WhichOneof("record_type") == "start"]
    assert start.project == PROJECT and start.name == folder.run_id
    saved = {r.save.name for r in records if r.WhichOneof("record_type") == "save"}
    assert {"config", "adapter/adapter_model.safetensors"} <= saved
    assert kinds[-1] == "finish"


def test_trackio_database_holds_the_logs_the_config_and_the_adapter(reported):
    folder, events = reported
    stored = trackio_run(folder.path.parent / "trackio", PROJECT, folder.run_id)
    logs = stored["logs"]
    losses = {log["step"]: log["train/loss"] for log in logs if "train/loss" in log}
    assert losses == recorded(events, "step", "loss")
    evaluations = {log["step"]: log["eval/loss"] for log in logs if "eval/loss" in log}
    assert evaluations == recorded(events, "eval", "eval_loss")
    assert stored["config"]["training"]["learning_rate"] == 0.01
    assert [a["name"] for a in stored["artifacts"]] == [f"{folder.run_id}-adapter"]


def test_preference_metrics_reach_the_tracker(tmp_path, tiny_model_dir):
    """A DPO run's reward statistics, train and eval, as TensorBoard shows them."""
    folder, events = run_worker(
        tmp_path / "dpo",
        tiny_model_dir,
        **{"training.stage": "dpo", "data.datasets": "[dpo_zh_demo]", "logging.report_to": "tensorboard"},
    )
    scalars = tensorboard_scalars(folder.path / "tensorboard")
    for split in ("train", "eval"):
        margins = {e.step: e.reward_margin for e in events if e.type == "preference" and e.split == split}
        assert margins and scalars[f"{split}/reward_margin"] == pytest.approx(margins, rel=1e-6, abs=1e-7)


def test_the_worker_imports_no_tracker_package_of_its_own():
    """Trackers are imported when a run reports to them; a run that reports nowhere pays for none."""
    code = (
        "import sys, studio.worker, studio.tracking.relay; "
        "print(sorted({'tensorboard', 'mlflow', 'wandb', 'swanlab', 'trackio'} & set(sys.modules)))"
    )
    printed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert printed.stdout.strip() == "[]"
