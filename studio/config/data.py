"""Which data to train on and how it becomes tokens."""

from __future__ import annotations

from pydantic import field_validator

from studio.config.base import FieldProblem, Section, clean_names, field


class DataConfig(Section):
    dataset_dir: str = field(
        "data",
        "Folder holding dataset_info.json and the data files (relative paths fall back to the bundled data/).",
    )
    datasets: list[str] = field(
        ["alpaca_zh_demo", "identity"],
        "Dataset names from dataset_info.json, mixed together.",
    )
    max_samples: int | None = field(
        None,
        "Keep at most this many examples per dataset; empty for all.",
        ge=1,
    )
    cutoff_len: int = field(
        1024,
        "Truncate each tokenised example to this many tokens.",
        ge=16,
    )
    val_size: float = field(
        0.1,
        "Fraction of examples held out for evaluation (0 disables evaluation).",
        ge=0,
        le=0.5,
    )
    system_prompt: str | None = field(
        None,
        "System prompt for every example; overrides the dataset's own.",
        advanced=True,
    )
    train_on_responses_only: bool = field(
        True,
        "Mask prompt tokens out of the loss so only answers are learned.",
        advanced=True,
    )

    @field_validator("datasets")
    @classmethod
    def _strip_names(cls, names: list[str]) -> list[str]:
        return clean_names(names, FieldProblem("config.no_datasets"))
