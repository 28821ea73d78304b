"""Experiment trackers a run reports to (TensorBoard, MLflow, W&B, SwanLab, Trackio), and where they write.

Locally by default: TensorBoard event files and the W&B and SwanLab offline runs in the run folder, MLflow's
file store and Trackio's database beside the runs. Keys come from the environment only, never from a config.
"""

from __future__ import annotations

import typing
from typing import Literal
from urllib.parse import urlsplit

from pydantic import field_validator

from studio.config.base import FieldProblem, Section, field

TrackerName = Literal["tensorboard", "mlflow", "wandb", "swanlab", "trackio"]
TRACKER_NAMES: tuple[str, ...] = typing.get_args(TrackerName)


class ReportingConfig(Section):
    report_to: list[TrackerName] = field(
        [],
        "Experiment trackers that receive what the run folder records (loss, eval loss, learning rate, tokens/s, "
        "memory, preference and reward statistics), the config as parameters and the adapter as an artifact: "
        "tensorboard, mlflow, wandb, swanlab, trackio. Each needs its package: pip install "
        "'qlora-studio[tensorboard]' (or [mlflow], [wandb], [swanlab], [trackio]). Nothing leaves this machine "
        "unless a server or an online mode is set below. A tracker that fails is logged once; training goes on.",
    )
    project: str = field(
        "qlora-studio",
        "Project the runs are grouped under in each tracker (MLflow: the experiment); each run is named after its "
        "run folder.",
        pattern=r"^[A-Za-z0-9._-]+$",
        max_length=100,
    )
    mlflow_tracking_uri: str = field(
        "",
        "MLflow tracking server or store. Empty: MLFLOW_TRACKING_URI when it is set, else a local file store beside "
        "the runs (RUNS_DIR/mlruns). A server's credentials come from the environment (MLFLOW_TRACKING_USERNAME and "
        "MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN), never from here.",
        advanced=True,
        max_length=1000,
    )
    wandb_mode: Literal["offline", "online"] = field(
        "offline",
        "offline: the W&B run is written into the run folder (wandb sync uploads it later); online: sent to W&B "
        "as it trains, with the key from the WANDB_API_KEY environment variable.",
        advanced=True,
    )
    swanlab_mode: Literal["offline", "online"] = field(
        "offline",
        "offline: the SwanLab run is written into the run folder (swanlab sync uploads it later); online: sent to "
        "SwanLab as it trains, with the key from the SWANLAB_API_KEY environment variable.",
        advanced=True,
    )

    @field_validator("report_to", mode="before")
    @classmethod
    def _names(cls, value: object) -> object:
        """A command line's `tensorboard,mlflow` (or `none`) is a list too; each tracker once."""
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip() and part.strip() != "none"]
        if isinstance(value, list):
            value = list(dict.fromkeys(value))
        return value

    @field_validator("mlflow_tracking_uri")
    @classmethod
    def _no_credentials(cls, value: str) -> str:
        """A password in the URI would be saved with the config (config.yaml, the adapter's studio_config.yaml)."""
        value = value.strip()
        try:
            parts = urlsplit(value)
        except ValueError:
            raise FieldProblem("tracking.uri_malformed", uri=value) from None
        if parts.password is not None or (parts.username is not None and parts.scheme in ("http", "https")):
            raise FieldProblem("tracking.uri_credentials")
        return value
