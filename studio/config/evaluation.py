"""What Evaluate & Predict measures and on which samples."""

from __future__ import annotations

from studio.config.base import Section, field


class EvaluationConfig(Section):
    datasets: list[str] = field(
        [], "Datasets to evaluate on; empty uses the validation split of the training data (the run's own, for a run's adapter).",
        zh="评估数据集",
    )
    max_samples: int = field(50, "Evaluate at most this many samples.", zh="最大样本数", ge=1)
    batch_size: int = field(4, "Samples per generation batch.", zh="批大小", ge=1)
    sample: bool = field(
        False, "Sample with the generation settings; off decodes greedily so metrics are reproducible.", zh="采样生成", advanced=True
    )
    output_dir: str = field("evaluations", "Where results go when the adapter is not a run's own.", zh="输出目录", advanced=True)
