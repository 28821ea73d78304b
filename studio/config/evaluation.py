"""What Evaluate & Predict measures and on which samples."""

from __future__ import annotations

from studio.config.base import Section, field


class EvaluationConfig(Section):
    datasets: list[str] = field(
        [],
        "Datasets to evaluate on; empty uses the validation split of the training data (the run's own, for a run's "
        "adapter).",
        zh="评估数据集",
        zh_help="用于评估的数据集；留空则使用训练数据的验证集（训练所得适配器使用该次训练自己的验证集）。",
    )
    max_samples: int = field(
        50, "Evaluate at most this many samples.", zh="最大样本数", zh_help="最多评估这么多条样本。", ge=1
    )
    batch_size: int = field(
        32,
        "Samples per batch at most, for the eval loss and the predictions (samples of similar length are batched "
        "together; a memory budget for the KV cache may make a batch smaller).",
        zh="批大小",
        zh_help="每批最多的样本数，用于验证损失与生成预测（长度相近的样本一起成批；KV 缓存的内存预算可能让批次更小）。",
        ge=1,
    )
    sample: bool = field(
        False,
        "Sample with the generation settings; off decodes greedily so metrics are reproducible.",
        zh="采样生成",
        zh_help="按生成参数采样；关闭时使用贪心解码，指标可复现。",
        advanced=True,
    )
    output_dir: str = field(
        "evaluations",
        "Where results go when the adapter is not a run's own.",
        zh="输出目录",
        zh_help="适配器不属于某次训练时，结果保存的位置。",
        advanced=True,
    )
