"""Which data to train on and how it becomes tokens."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter, ValidationError, field_validator, model_validator

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
    train_on_prompt: bool = field(
        False,
        "sft: learn the prompt tokens too (system, questions, tool results), not only the answers "
        "(LLaMA-Factory's train_on_prompt).",
        advanced=True,
    )
    mask_history: bool = field(
        False,
        "sft: learn only each conversation's last answer; earlier turns stay as context, and a conversation "
        "longer than cutoff_len loses its earliest turns first (LLaMA-Factory's mask_history).",
        advanced=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed_fields(cls, values: Any) -> Any:
        """train_on_responses_only (configs written before train_on_prompt) is train_on_prompt's opposite."""
        if not isinstance(values, dict) or "train_on_responses_only" not in values:
            return values
        values = dict(values)
        responses_only = values.pop("train_on_responses_only")
        try:
            values.setdefault("train_on_prompt", not TypeAdapter(bool).validate_python(responses_only))
        except ValidationError:  # not a yes or no: refused under the field's present name, with the value given
            values.setdefault("train_on_prompt", responses_only)
        return values

    @field_validator("datasets")
    @classmethod
    def _strip_names(cls, names: list[str]) -> list[str]:
        return clean_names(names, FieldProblem("config.no_datasets"))

    @model_validator(mode="after")
    def _one_way_of_masking(self) -> DataConfig:
        if self.mask_history and self.train_on_prompt:  # LLaMA-Factory refuses the pair as well
            raise FieldProblem("config.mask_history_with_train_on_prompt")
        return self
