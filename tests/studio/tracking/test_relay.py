"""A tracker that fails never stops training: a server that is down, a package broken since Start, a store that
vanishes mid-run. Each is said once, as a warning, and the run finishes with every metric in events.jsonl."""

import json
import os
import subprocess
import sys

from studio.config import RunConfig
from studio.runs.folder import RunFolder
from tests.support import free_port, run_worker, wait_for
from tests.support.trackers import recorded, tensorboard_scalars


def _warnings(events) -> list[str]:
    return [e.message for e in events if e.type == "log" and e.level == "warning"]


def test_a_server_that_is_down_and_a_broken_package_are_each_said_once(tmp_path, tiny_model_dir):
    broken = tmp_path / "site" / "trackio"  # trackio as an environment can leave it: there, and failing to import
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('trackio was removed while the run waited')\n")
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    folder, events = run_worker(
        tmp_path / "runs" / "failing",
        tiny_model_dir,
        env={"PYTHONPATH": os.pathsep.join([str(broken.parent), os.environ.get("PYTHONPATH", "")])},
        **{"logging.report_to": "[tensorboard, mlflow, trackio]", "logging.mlflow_tracking_uri": down},
    )
    assert events[-1].type == "finished"
    warnings = _warnings(events)
    assert len(warnings) == 2, warnings
    mlflow, trackio = warnings
    assert mlflow.startswith("mlflow could not start: MlflowException") and "Training goes on without it." in mlflow
    assert trackio.startswith("trackio could not start (pip install 'qlora-studio[trackio]'): ImportError")
    scalars = tensorboard_scalars(folder.path / "tensorboard")  # the tracker that works got everything
    assert scalars["train/loss"].keys() == recorded(events, "step", "loss").keys() == {1, 2, 3, 4}


def test_a_store_that_vanishes_mid_run_is_said_once_and_training_finishes(tmp_path, tiny_model_dir):
    folder = RunFolder(tmp_path / "runs" / "vanishing")
    folder.path.mkdir(parents=True)
    config = RunConfig().with_overrides(
        {
            "model.name_or_path": str(tiny_model_dir),
            "quantization.method": "none",
            "data.max_samples": "24",
            "training.max_steps": "100",  # long enough (seconds) for the store to go while it trains
            "training.logging_steps": "1",
            "training.eval_steps": "1000",
            "training.save_steps": "1000",
            "logging.report_to": "[mlflow, tensorboard]",
        }
    )
    config.save(folder.config_file)
    worker = subprocess.Popen(
        [sys.executable, "-m", "studio.worker", str(folder.path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_for(lambda: b'"type":"step"' in _read(folder), timeout=300, poll=0.05, what="the first step")
        # the store goes at once, as a server or a disk can: a rename, since an rmtree racing MLflow's own writes
        # (it recreates a run's metrics folder) can fail with "Directory not empty"
        (tmp_path / "runs" / "mlruns").rename(tmp_path / "gone")
        assert worker.wait(timeout=600) == 0, worker.stderr.read() if worker.stderr else ""
    finally:
        worker.kill()
    events, _ = folder.read_events()
    assert events[-1].type == "finished"
    [warning] = _warnings(events)
    assert warning.startswith("MLflow failed (log: ")
    # MLflow's own words are not checked: they depend on where its file store was when the store went ("... does
    # not exist", "Run ... not found", errno 2, or "Invalid parent directory" after a log in flight recreated a run)
    assert "receives nothing more from this run; training goes on" in warning
    steps = recorded(events, "step", "loss")
    assert len(steps) == 100
    assert tensorboard_scalars(folder.path / "tensorboard")["train/loss"].keys() == steps.keys()
    assert json.loads(folder.status_file.read_text())["state"] == "finished"


def _read(folder: RunFolder) -> bytes:
    try:
        return folder.events_file.read_bytes()
    except FileNotFoundError:
        return b""
