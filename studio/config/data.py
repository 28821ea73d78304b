"""Which data to train on and how it becomes tokens."""

from __future__ import annotations

from pydantic import field_validator

from studio.config.base import FieldProblem, Section, clean_names, field


class DataConfig(Section):
    dataset_dir: str = field(
        "data",
        "Folder holding dataset_info.json and the data files (relative paths fall back to the bundled data/).",
        zh="数据目录",
        zh_help="存放 dataset_info.json 与数据文件的目录（相对路径找不到时回退到自带的 data/）。",
    )
    datasets: list[str] = field(
        ["alpaca_zh_demo", "identity"],
        "Dataset names from dataset_info.json, mixed together.",
        zh="数据集",
        zh_help="dataset_info.json 中的数据集名称，混合使用。",
    )
    max_samples: int | None = field(
        None,
        "Keep at most this many examples per dataset; empty for all.",
        zh="最大样本数",
        zh_help="每个数据集最多保留的样本数；留空表示全部。",
        ge=1,
    )
    cutoff_len: int = field(
        1024,
        "Truncate each tokenised example to this many tokens.",
        zh="截断长度",
        zh_help="每条样本分词后截断到的最大 token 数。",
        ge=16,
    )
    val_size: float = field(
        0.1,
        "Fraction of examples held out for evaluation (0 disables evaluation).",
        zh="验证集比例",
        zh_help="留作验证集的样本比例（0 表示不做评估）。",
        ge=0,
        le=0.5,
    )
    system_prompt: str | None = field(
        None,
        "System prompt for every example; overrides the dataset's own.",
        zh="系统提示词",
        zh_help="每条样本使用的系统提示词；会覆盖数据集自带的。",
        advanced=True,
    )
    train_on_responses_only: bool = field(
        True,
        "Mask prompt tokens out of the loss so only answers are learned.",
        zh="仅训练回答部分",
        zh_help="把提示部分从损失中屏蔽，只学习回答。",
        advanced=True,
    )

    @field_validator("datasets")
    @classmethod
    def _strip_names(cls, names: list[str]) -> list[str]:
        return clean_names(
            names,
            FieldProblem(
                "choose at least one dataset (the Datasets list of the Train tab, from dataset_info.json)",
                "请至少选择一个数据集（训练页的“数据集”列表，来自 dataset_info.json）",
            ),
        )
