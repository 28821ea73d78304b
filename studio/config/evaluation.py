"""What Evaluate & Predict measures and on which samples."""

from __future__ import annotations

from studio.config.base import Section, field


class EvaluationConfig(Section):
    datasets: list[str] = field(
        [],
        "Datasets to evaluate on; empty uses the validation split of the training data (the run's own, for a run's "
        "adapter).",
    )
    max_samples: int = field(50, "Evaluate at most this many samples.", ge=1)
    batch_size: int = field(
        32,
        "Samples per batch at most, for the eval loss and the predictions (samples of similar length are batched "
        "together; a memory budget for the KV cache may make a batch smaller).",
        ge=1,
    )
    sample: bool = field(
        False,
        "Sample with the generation settings; off decodes greedily so metrics are reproducible.",
        advanced=True,
    )
    output_dir: str = field(
        "evaluations",
        "Where results go when the adapter is not a run's own.",
        advanced=True,
    )
