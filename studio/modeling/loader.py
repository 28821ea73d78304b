"""Loading tokenizer and base model as a run's config describes them, and attaching LoRA."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from studio.config import LoraConfig, ModelConfig
from studio.modeling.chat_templates import apply_chat_template_choice
from studio.modeling.compute import ComputePlan
from studio.modeling.sources import ModelLoadError

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import BitsAndBytesConfig, PreTrainedModel, PreTrainedTokenizerBase


def load_tokenizer(config: ModelConfig, model_path: str) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=config.trust_remote_code)
    except OSError as error:
        raise ModelLoadError("modeling.tokenizer_unloadable", name=config.name_or_path, error=error) from None
    apply_chat_template_choice(tokenizer, config.chat_template, config.name_or_path, config.enable_thinking)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def load_base_model(config: ModelConfig, model_path: str, plan: ComputePlan) -> PreTrainedModel:
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {
        "dtype": plan.weight_dtype,
        "device_map": {"": plan.device},
        "trust_remote_code": config.trust_remote_code,
    }
    if config.attn_implementation != "auto":
        kwargs["attn_implementation"] = config.attn_implementation
    if plan.quantize_4bit:
        kwargs["quantization_config"] = _bnb_config(plan)
    try:
        return AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
    except OSError as error:
        raise ModelLoadError("modeling.model_unloadable", name=config.name_or_path, error=error) from None


def _bnb_config(plan: ComputePlan) -> BitsAndBytesConfig:
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=plan.quant_type,
        bnb_4bit_use_double_quant=plan.double_quant,
        bnb_4bit_compute_dtype=plan.compute_dtype,
        bnb_4bit_quant_storage=torch.uint8,
    )


def skip_bitsandbytes() -> None:
    """Keep bitsandbytes out of a process that does not quantise.

    peft imports bitsandbytes eagerly when it is installed, and bitsandbytes pulls in
    torch's compiler stack: about 2 s of a 2-core CPU before the first step, for nothing.
    A None entry in sys.modules makes `find_spec` report it missing and `import` fail cleanly.
    """
    import sys

    if "bitsandbytes" not in sys.modules:
        # typeshed types sys.modules as holding modules only; None is the import system's documented "missing"
        sys.modules["bitsandbytes"] = None  # type: ignore[assignment]


def prepare_for_training(model: PreTrainedModel, plan: ComputePlan, gradient_checkpointing: bool) -> PreTrainedModel:
    """Freeze the base and optionally turn on recomputation.

    Frozen weights keep their dtype, 4-bit or not. (peft's `prepare_model_for_kbit_training`
    would upcast the embeddings and output layer to fp32: on Qwen1.5-1.8B 1.2 GB more for
    weights that never change, and an fp32 residual stream. LLaMA-Factory does not upcast either.)
    """
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    return model


def attach_lora(model: PreTrainedModel, config: LoraConfig) -> PeftModel:
    """A new adapter as `config` describes it, or the adapter lora.init_adapter names, trainable, to continue."""
    if config.init_adapter:
        return continue_adapter(model, config.init_adapter)
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    targets = "all-linear" if config.target_modules == ["all"] else config.target_modules
    peft_config = PeftLoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,  # type: ignore[arg-type]  # peft says int but only divides by it: a float scales as well
        lora_dropout=config.dropout,
        target_modules=targets,
        use_rslora=config.use_rslora,
        use_dora=config.use_dora,
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(model, peft_config)
    except ValueError as error:  # e.g. a target module name the model does not have
        raise ModelLoadError("modeling.lora_unattachable", error=error) from None


def continue_adapter(model: PreTrainedModel, path: str) -> PeftModel:
    from peft import PeftModel

    from studio.adapters import read_adapter

    read_adapter(path)  # AdapterError naming what is missing
    try:
        return PeftModel.from_pretrained(model, str(Path(path).expanduser()), is_trainable=True)
    except (ValueError, RuntimeError, OSError) as error:  # another architecture's adapter, damaged weights
        raise ModelLoadError("modeling.adapter_not_continuable", path=path, error=error) from None


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total), counting 4-bit packed weights at their real element count."""
    trainable = total = 0
    for parameter in model.parameters():
        count = parameter.numel()
        if parameter.__class__.__name__ == "Params4bit":
            count *= 2  # two 4-bit values per stored byte
        total += count
        trainable += count if parameter.requires_grad else 0
    return trainable, total
