"""logging.* as a config, CLI and page take it; a run whose trackers cannot start is refused at Start, saying what
to install or set; nothing in a config holds a key."""

import sys
from pathlib import Path

import pytest

from studio.config import ConfigError, RunConfig
from studio.config.reporting import TRACKER_NAMES
from studio.errors import PathNotAllowed, StudioError
from studio.tracking.metrics import metrics_of
from studio.tracking.registry import TRACKERS, check_trackers
from studio.workspace import Workspace


def test_every_name_report_to_accepts_has_its_tracker_and_extra():
    assert tuple(TRACKERS) == TRACKER_NAMES
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    pyproject = tomllib.loads((Path(__file__).resolve().parents[3] / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    for name in TRACKER_NAMES:
        assert name in extras and all(req in extras["test"] for req in extras[name]), name
        assert TRACKERS[name].installed(), f"{name}: the test extra installs it"


def test_report_to_is_empty_by_default_and_reads_a_command_line_list():
    assert RunConfig().logging.report_to == []
    config = RunConfig().with_overrides({"logging.report_to": "tensorboard,mlflow,tensorboard"})
    assert config.logging.report_to == ["tensorboard", "mlflow"]
    assert "--logging.report_to '[tensorboard, mlflow]'" in config.to_command()
    assert RunConfig().with_overrides({"logging.report_to": "none"}).logging.report_to == []
    with pytest.raises(ConfigError, match="logging.report_to"):
        RunConfig().with_overrides({"logging.report_to": "comet"})


def test_a_tracking_uri_with_credentials_is_refused_so_no_config_holds_them():
    for uri in ("http://user:secret@mlflow.example:5000", "https://token@mlflow.example"):
        with pytest.raises(ConfigError, match="MLFLOW_TRACKING_USERNAME"):
            RunConfig().with_overrides({"logging.mlflow_tracking_uri": uri})
    assert RunConfig().with_overrides({"logging.mlflow_tracking_uri": "http://mlflow.example:5000"})


def test_a_missing_package_is_refused_at_start_naming_its_extra(monkeypatch, service, tiny_config):
    """The package as Python sees it when it is not installed (a None entry in sys.modules: import fails)."""
    monkeypatch.setitem(sys.modules, "trackio", None)
    config = tiny_config(**{"logging.report_to": "[tensorboard, trackio]"})
    with pytest.raises(StudioError) as refused:
        service.start(config)
    assert "pip install 'qlora-studio[trackio]'" in str(refused.value)
    assert "logging.report_to" in refused.value.text("zh") and not list(service.runs_dir.glob("*/config.yaml"))


def test_an_online_mode_needs_its_key_in_the_environment(monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    online = RunConfig().with_overrides({"logging.report_to": "wandb", "logging.wandb_mode": "online"}).logging
    with pytest.raises(StudioError, match="WANDB_API_KEY") as refused:
        check_trackers(online)
    assert "logging.wandb_mode" in str(refused.value)
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    check_trackers(online)
    check_trackers(RunConfig().with_overrides({"logging.report_to": "swanlab"}).logging)  # offline: no key


def test_from_the_page_mlflow_writes_inside_the_workspace_only(tmp_path):
    workspace = Workspace.serve(tmp_path, tmp_path / "runs")
    inside = RunConfig().with_overrides({"logging.mlflow_tracking_uri": str(tmp_path / "mlruns")})
    workspace.check_config(inside)
    for uri in ("http://127.0.0.1:5000", f"file://{tmp_path.parent}/elsewhere", "sqlite:////etc/mlflow.db"):
        with pytest.raises(PathNotAllowed):
            workspace.check_config(RunConfig().with_overrides({"logging.mlflow_tracking_uri": uri}))


def test_events_become_metrics_by_their_type():
    from studio.runs.events import Gpu, GpuReading, Heartbeat, Rewards

    rewards = Rewards(
        step=3,
        split="train",
        reward_mean=0.5,
        reward_std=0.1,
        functions={"length": 0.25},
        function_std={"length": 0.05},
        completion_length=12.0,
        ended=1.0,
        kl=None,
    )
    metrics = metrics_of(rewards)
    assert metrics["train/reward_mean"] == 0.5 and metrics["train/reward_length"] == 0.25
    assert metrics["train/reward_length_std"] == 0.05 and "train/kl" not in metrics  # not measured: not sent
    gpu = Gpu(gpus=[GpuReading(index=0, name="H100", used_mib=1024, total_mib=81559, utilization_pct=None)])
    assert metrics_of(gpu) == {"system/gpu0_used_mib": 1024.0}
    assert metrics_of(Heartbeat(step=1, total_steps=2, elapsed_s=1.0, eta_s=1.0)) == {}
