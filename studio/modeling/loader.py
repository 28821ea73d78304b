"""Loading tokenizer and base model as a run's config describes them, and attaching LoRA."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from studio.config import LoraConfig, ModelConfig
from studio.modeling.chat_templates import apply_chat_template_choice, format_of
from studio.modeling.compute import ComputePlan
from studio.modeling.rope import apply_rope_scaling
from studio.modeling.sources import ModelLoadError
from studio.modeling.vocab import fit_embeddings, fix_special_tokens

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import BitsAndBytesConfig, PreTrainedModel, PreTrainedTokenizerBase


def load_tokenizer(
    config: ModelConfig, model_path: str, info: Callable[[str], None] = lambda line: None
) -> PreTrainedTokenizerBase:
    """The tokenizer with the chosen chat template installed and LLaMA-Factory's fix for it (studio.modeling.vocab:
    the template's end token and stop words as special tokens); `info` hears what the fix changed."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=config.trust_remote_code)
    except OSError as error:
        raise ModelLoadError("modeling.tokenizer_unloadable", name=config.name_or_path, error=error) from None
    apply_chat_template_choice(tokenizer, config.chat_template, config.name_or_path, config.enable_thinking)
    for line in fix_special_tokens(tokenizer, format_of(tokenizer)):
        info(line)
    tokenizer.padding_side = "right"
    return tokenizer


def load_base_model(
    config: ModelConfig,
    model_path: str,
    plan: ComputePlan,
    *,
    tokenizer: PreTrainedTokenizerBase | None = None,
    cutoff_len: int | None = None,
    info: Callable[[str], None] = lambda line: None,
) -> PreTrainedModel:
    """The base model as planned. model.rope_scaling is written into its config first, for sequences of
    `cutoff_len` tokens (None: no run's data is known); with `tokenizer` the embedding is made to hold every id
    (model.resize_vocab), or the pair refused."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    from studio.modeling.vision import vision_family
    from studio.modeling.vision_parts import quantization_skips

    kwargs: dict[str, Any] = {
        "dtype": plan.weight_dtype,
        "device_map": {"": plan.device},
        "trust_remote_code": config.trust_remote_code,
    }
    if config.attn_implementation != "auto":
        kwargs["attn_implementation"] = config.attn_implementation
    family = vision_family(model_path)
    if plan.quantize_4bit:
        kwargs["quantization_config"] = _bnb_config(plan, quantization_skips(family))
    try:
        if config.rope_scaling != "none":
            kwargs["config"] = _scaled_config(config, model_path, cutoff_len, info)
        # a vision-language model loads whole (vision tower, projector, language model) with its own class
        model_class = AutoModelForImageTextToText if family else AutoModelForCausalLM
        model = model_class.from_pretrained(model_path, **kwargs)
    except OSError as error:
        raise ModelLoadError("modeling.model_unloadable", name=config.name_or_path, error=error) from None
    fitted = fit_embeddings(model, tokenizer, config) if tokenizer is not None else None
    if fitted:
        info(fitted)
    return model


def _scaled_config(config: ModelConfig, model_path: str, cutoff_len: int | None, info: Callable[[str], None]) -> Any:
    from transformers import AutoConfig

    hf_config = AutoConfig.from_pretrained(model_path, trust_remote_code=config.trust_remote_code)
    line = apply_rope_scaling(hf_config, config, cutoff_len)
    if line:
        info(line)
    return hf_config


def _bnb_config(plan: ComputePlan, skip: list[str] | None = None) -> BitsAndBytesConfig:
    """`skip`: modules left unquantised instead of transformers' default (the output layer): a vision-language
    model's vision tower and projector too (studio.modeling.vision_parts)."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=plan.quant_type,
        bnb_4bit_use_double_quant=plan.double_quant,
        bnb_4bit_compute_dtype=plan.compute_dtype,
        bnb_4bit_quant_storage=torch.uint8,
        llm_int8_skip_modules=skip,
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


# lora.init as peft names it; pissa with 16 iterations of randomised SVD, as LLaMA-Factory's default pissa_iter
_PEFT_INIT = {"default": True, "pissa": "pissa_niter_16", "olora": "olora", "loftq": True}


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
        # loftq's start is computed afterwards from the 4-bit weights (replace_lora_weights_loftq)
        init_lora_weights=_PEFT_INIT[config.init],  # type: ignore[arg-type]  # peft lists its strings as a Literal
        modules_to_save=config.modules_to_save or None,
        # a tied output layer trained whole stays tied to the embeddings (one trained copy, as in the model)
        ensure_weight_tying=bool(config.modules_to_save),
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(model, peft_config)
    except ValueError as error:  # e.g. a target module name the model does not have
        raise ModelLoadError("modeling.lora_unattachable", error=error) from None


def continue_adapter(model: PreTrainedModel, path: str) -> PeftModel:
    from peft import PeftModel

    from studio.adapters import read_peft_adapter

    read_peft_adapter(path)  # AdapterError naming what is missing, or that it is a whole model
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
