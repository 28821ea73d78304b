"""Typed configuration: one pydantic model per concern, the single source of truth."""

from studio.config.base import ConfigError
from studio.config.chat import ChatConfig
from studio.config.data import DataConfig
from studio.config.distributed import DistributedConfig
from studio.config.evaluation import EvaluationConfig, TaskMetric
from studio.config.export import ExportConfig
from studio.config.finetuning import FinetuningConfig
from studio.config.generation import GenerationConfig
from studio.config.lora import LoraConfig
from studio.config.model import EMBEDDED_MODEL, MODEL_PRESETS, ModelConfig
from studio.config.optimizer import OptimizerConfig
from studio.config.preference import PreferenceConfig
from studio.config.quantization import QuantizationConfig
from studio.config.reinforcement import GrpoConfig, PpoConfig, RewardsConfig
from studio.config.reporting import TRACKER_NAMES, ReportingConfig
from studio.config.run import RunConfig
from studio.config.training import TrainingConfig

__all__ = [
    "ChatConfig",
    "ConfigError",
    "DataConfig",
    "DistributedConfig",
    "EMBEDDED_MODEL",
    "EvaluationConfig",
    "MODEL_PRESETS",
    "ExportConfig",
    "FinetuningConfig",
    "GenerationConfig",
    "GrpoConfig",
    "LoraConfig",
    "ModelConfig",
    "OptimizerConfig",
    "PpoConfig",
    "PreferenceConfig",
    "QuantizationConfig",
    "RewardsConfig",
    "ReportingConfig",
    "RunConfig",
    "TaskMetric",
    "TRACKER_NAMES",
    "TrainingConfig",
]
