"""The whole run config: the sections together, as YAML and as a command line."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError, model_validator

from studio.config.base import ConfigError, FieldProblem, Section, field
from studio.config.chat import ChatConfig
from studio.config.data import DataConfig
from studio.config.distributed import DistributedConfig
from studio.config.evaluation import EvaluationConfig
from studio.config.export import ExportConfig
from studio.config.finetuning import FinetuningConfig
from studio.config.generation import GenerationConfig
from studio.config.lora import LoraConfig
from studio.config.model import ModelConfig
from studio.config.optimizer import OptimizerConfig, optimizer_needs_full_weights
from studio.config.preference import PreferenceConfig
from studio.config.quantization import QuantizationConfig
from studio.config.reinforcement import GrpoConfig, PpoConfig, RewardsConfig
from studio.config.reporting import ReportingConfig
from studio.config.training import TrainingConfig
from studio.locales import say

COMMAND = "qlora-studio train"
MAX_CONFIG_BYTES = 256 * 1024
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when PyYAML was built with it


class RunConfig(Section):
    name: str = field(
        "auto",
        "Run name; the run folder is NAME-DATE-TIME. 'auto' names it after the stage and the first dataset "
        "(e.g. dpo-dpo_zh_demo), so runs tell themselves apart in lists.",
        pattern=r"^[A-Za-z0-9._-]+$",
    )
    model: ModelConfig = ModelConfig()
    finetuning: FinetuningConfig = FinetuningConfig()
    quantization: QuantizationConfig = QuantizationConfig()
    lora: LoraConfig = LoraConfig()
    data: DataConfig = DataConfig()
    training: TrainingConfig = TrainingConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    distributed: DistributedConfig = DistributedConfig()
    preference: PreferenceConfig = PreferenceConfig()
    ppo: PpoConfig = PpoConfig()
    grpo: GrpoConfig = GrpoConfig()
    rewards: RewardsConfig = RewardsConfig()
    generation: GenerationConfig = GenerationConfig()
    chat: ChatConfig = ChatConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    export: ExportConfig = ExportConfig()
    logging: ReportingConfig = ReportingConfig()

    @model_validator(mode="after")
    def _method_fits(self) -> RunConfig:
        """The combinations of finetuning method, quantisation, adapter start and stage that cannot train."""
        method, quantized = self.finetuning.method, self.quantization.method in ("4bit", "8bit")
        if self.finetuning.trains_whole_model and quantized:
            raise FieldProblem("config.whole_model_not_quantized", method=method)
        if method != "lora" and self.training.stage in ("rm", "ppo", "grpo"):
            raise FieldProblem("config.method_needs_lora", method=method, stage=self.training.stage)
        if self.finetuning.trains_whole_model and self.lora.init_adapter:
            raise FieldProblem("config.whole_model_no_init_adapter", method=method)
        if self.lora.init in ("pissa", "olora") and self.quantization.method != "none":
            raise FieldProblem("config.lora_init_needs_full_precision", init=self.lora.init)
        if self.lora.init == "loftq" and self.quantization.method != "4bit":
            raise FieldProblem("config.loftq_needs_4bit")
        if optimizer_needs_full_weights(self.optimizer.name) and not self.finetuning.trains_whole_model:
            raise FieldProblem("config.optimizer_needs_whole_model", optimizer=self.optimizer.name, method=method)
        return self

    @classmethod
    def from_dict(
        cls,
        values: dict[str, Any],
        source: str | None = None,
        line_of: Callable[[tuple[str, ...]], int | None] | None = None,
    ) -> RunConfig:
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            raise ConfigError.of(error, source, line_of) from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> RunConfig:
        path = Path(path)
        if not path.is_file():
            raise ConfigError([say("config.no_such_file", path=path)], str(path))
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:  # a run config is a few KiB; parsing megabytes of YAML takes seconds of CPU
            limit = MAX_CONFIG_BYTES // 1024
            raise ConfigError([say("config.file_too_large", size_kib=size / 1024, limit_kib=limit)], str(path))
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise ConfigError([say("config.not_utf8", byte=error.start)], str(path)) from None
        return cls.from_yaml_text(text, source=str(path))

    @classmethod
    def from_yaml_text(cls, text: str, source: str | None = None) -> RunConfig:
        loader = _SafeLoader(text)
        try:
            root = loader.get_single_node()
            values = (loader.construct_document(root) if root is not None else None) or {}
        except yaml.YAMLError as error:
            raise ConfigError([say("config.not_yaml", error=str(error))], source) from None
        except RecursionError:
            raise ConfigError([say("config.yaml_too_deep")], source) from None
        finally:
            loader.dispose()
        if not isinstance(values, dict):
            raise ConfigError([say("config.top_level_not_sections")], source)
        return cls.from_dict(values, source, lambda loc: _yaml_line(root, loc))

    @property
    def run_name(self) -> str:
        """What the run folder is called before its date and time: the name, or for 'auto' the stage and data."""
        if self.name != "auto":
            return self.name
        data = re.sub(r"[^A-Za-z0-9._-]", "_", self.data.datasets[0])  # a folder name the service accepts
        data = data if re.search(r"[A-Za-z0-9]", data) else "data"
        more = f"-and-{len(self.data.datasets) - 1}" if len(self.data.datasets) > 1 else ""
        return f"{self.training.stage}-{data[:60]}{more}"

    def to_yaml(self) -> str:
        header = f"# Run with: {COMMAND} THIS_FILE.yaml\n"
        return header + yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_yaml(), encoding="utf-8")
        return path

    def to_command(self) -> str:
        """The `qlora-studio train` line that reproduces this config (only non-default fields)."""
        parts = [COMMAND]
        for key, value in _flatten(self.model_dump(mode="json", exclude_defaults=True)):
            parts += [f"--{key}", shlex.quote(_render_value(value))]
        return " ".join(parts)

    def with_overrides(self, overrides: dict[str, str]) -> RunConfig:
        """Apply dotted `section.field` overrides given as YAML scalars (as typed on a command line)."""
        values = self.model_dump(mode="json")
        for dotted, raw in overrides.items():
            _set_dotted(values, dotted, _scalar(raw))
        return RunConfig.from_dict(values, source="command-line overrides")


def _scalar(raw: str) -> Any:
    """An override's value as YAML reads it; text YAML cannot read (a prompt starting with "{question}") is that
    text, which the field then accepts or refuses by name."""
    if raw == "":
        return None
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _flatten(values: dict[str, Any], prefix: str = ""):
    for key, value in values.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _render_value(value: Any) -> str:
    if isinstance(value, (list, bool)) or value is None:
        return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True).strip().removesuffix("...").strip()
    return str(value)


def _set_dotted(values: dict[str, Any], dotted: str, value: Any) -> None:
    *sections, leaf = dotted.split(".")
    target = values
    for section in sections:
        if not isinstance(target.get(section), dict):
            raise ConfigError([say("config.unknown_section", path=dotted, section=section)], "command-line overrides")
        target = target[section]
    target[leaf] = value


def _yaml_line(node: yaml.Node | None, loc: tuple[str, ...]) -> int | None:
    """1-based line of the YAML key at `loc`, so errors point into the user's file."""
    line = None
    for key in loc:
        if not isinstance(node, yaml.MappingNode):
            break
        match = next(((k, v) for k, v in node.value if k.value == key), None)
        if match is None:
            break
        line, node = match[0].start_mark.line + 1, match[1]
    return line
