"""The studio's settings in vLLM's terms, and what vLLM cannot do here, refused by name with what to do instead.

Nothing here imports vllm: what `vllm.LLM`, `SamplingParams` and `LoRARequest` are given is worked out here, as plain
arguments, and studio.chat.vllm_engine hands them over. So the rules are tested where vLLM cannot be installed (no
CUDA GPU), and the module that calls vLLM stays small.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.config import ChatConfig, GenerationConfig, ModelConfig
from studio.errors import StudioError

if TYPE_CHECKING:
    from studio.adapters import AdapterInfo
    from studio.modeling.compute import ComputePlan

LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the max_lora_rank values vLLM's LoRAConfig accepts


class VllmRefused(StudioError):
    """What vLLM cannot do on this machine or cannot serve, said with what to do instead."""


def check_vllm(cuda: bool | None = None, installed: bool | None = None) -> None:
    """Refuse chat.engine vllm where it cannot run: without a CUDA GPU (installing vllm would not help, so that is
    said first), or without the vllm package. `cuda` and `installed` default to this machine's."""
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    if not cuda:
        raise VllmRefused("engines.vllm_needs_cuda")
    if installed is None:
        installed = importlib.util.find_spec("vllm") is not None
    if not installed:
        raise VllmRefused("engines.vllm_not_installed")


def check_servable(info: AdapterInfo, max_lora_rank: int) -> None:
    """Refuse an adapter vLLM's LoRA cannot serve, before it is handed over: a whole model, another kind of adapter,
    DoRA, modules trained in full, a rank above chat.max_lora_rank."""
    if info.whole_model:
        raise VllmRefused("engines.vllm_whole_model", name=info.name, method=info.method, path=info.path)
    if info.method != "lora":
        raise VllmRefused("engines.vllm_not_lora", name=info.name, method=info.method)
    config = _adapter_config(info.path)
    if config.get("use_dora"):
        raise VllmRefused("engines.vllm_dora", name=info.name)
    if config.get("modules_to_save"):
        modules = ", ".join(config["modules_to_save"])
        raise VllmRefused("engines.vllm_modules_to_save", name=info.name, modules=modules)
    rank = max([info.rank or 0, *(config.get("rank_pattern") or {}).values()])
    if rank > max_lora_rank:
        raise VllmRefused("engines.vllm_rank_too_high", name=info.name, rank=rank, most=max_lora_rank)


def lora_rank_reserved(rank: int) -> int:
    """The max_lora_rank vLLM is given for chat.max_lora_rank `rank`: the smallest size it offers that holds it."""
    return next((allowed for allowed in LORA_RANKS if allowed >= rank), LORA_RANKS[-1])


def _adapter_config(path: str) -> dict[str, Any]:
    try:
        config = json.loads((Path(path) / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # read_adapter read it before; a file gone since is vLLM's to refuse
    return config if isinstance(config, dict) else {}


class LoraSlots:
    """The id vLLM knows each loaded adapter by. vLLM keeps an adapter's weights under its id, so no id is given
    twice: an adapter unloaded and loaded again (its folder perhaps trained further) gets a new one and is read anew."""

    def __init__(self) -> None:
        self._loaded: dict[str, tuple[int, str]] = {}  # name -> (id, folder)
        self._last = 0  # ids start at 1: vLLM refuses 0

    def add(self, name: str, path: str) -> int:
        if name not in self._loaded:
            self._last += 1
            self._loaded[name] = (self._last, path)
        return self._loaded[name][0]

    def remove(self, name: str) -> int:
        lora_id, _ = self._loaded.pop(name)
        return lora_id

    def request(self, name: str | None) -> tuple[str, int, str] | None:
        """LoRARequest's arguments (name, id, folder) for adapter `name`; None for the base model."""
        if name is None:
            return None
        lora_id, path = self._loaded[name]
        return name, lora_id, path

    def clear(self) -> None:
        self._loaded.clear()  # the ids given stay given: `_last` goes on


def generation_sampling(generation: GenerationConfig, stop_ids: set[int]) -> dict[str, Any]:
    """SamplingParams' arguments for Chat's settings, sampled as the HF engine samples them: temperature 0 is greedy
    (the repetition penalty still applies), top_k 0 is off."""
    return _sampling(
        greedy=generation.temperature == 0,
        temperature=generation.temperature,
        top_p=generation.top_p,
        top_k=generation.top_k,
        repetition_penalty=generation.repetition_penalty,
        max_tokens=generation.max_new_tokens,
        seed=generation.seed,
        stop_ids=stop_ids,
    )


def generate_sampling(kwargs: dict[str, Any], max_new_tokens: int, seed: int, stop_ids: set[int]) -> dict[str, Any]:
    """SamplingParams' arguments for the sampling arguments of a transformers `generate` call (the OpenAI endpoint's:
    do_sample, temperature, top_p, top_k, repetition_penalty, stop_strings), None meaning transformers' default."""
    return _sampling(
        greedy=not kwargs.get("do_sample"),
        temperature=kwargs.get("temperature") or 1.0,
        top_p=kwargs.get("top_p") or 1.0,
        top_k=kwargs.get("top_k") or 0,
        repetition_penalty=kwargs.get("repetition_penalty") or 1.0,
        max_tokens=max_new_tokens,
        seed=seed,
        stop_ids=stop_ids,
        stops=kwargs.get("stop_strings") or [],
    )


def _sampling(
    *,
    greedy: bool,
    temperature: float,
    top_p: float,
    top_k: int,
    repetition_penalty: float,
    max_tokens: int,
    seed: int,
    stop_ids: set[int],
    stops: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    common = {
        "max_tokens": max_tokens,
        "repetition_penalty": repetition_penalty,
        "seed": seed,
        "stop_token_ids": sorted(stop_ids),  # the model's, the tokenizer's and its chat format's end tokens
        "stop": list(stops),  # the answer's text is cut at one by the caller, as with the HF engine
    }
    if greedy:  # vLLM samples greedily at temperature 0; top_p and top_k then change nothing
        return {**common, "temperature": 0.0, "top_p": 1.0, "top_k": -1}
    return {**common, "temperature": temperature, "top_p": top_p, "top_k": top_k or -1}  # -1: all tokens


def check_loadable(model: ModelConfig, plan: ComputePlan) -> None:
    """Refuse a base vLLM would not load as the HF engine does: an 8-bit one, or one with RoPE scaling."""
    if plan.quantize_8bit:
        raise VllmRefused("engines.vllm_no_8bit")
    if model.rope_scaling != "none":
        raise VllmRefused("engines.vllm_no_rope_scaling", kind=model.rope_scaling)


def llm_options(path: str, model: ModelConfig, plan: ComputePlan, settings: ChatConfig) -> dict[str, Any]:
    """`vllm.LLM`'s arguments for the base model at `path`, quantised and typed as `plan` says (the plan the HF engine
    would load it with, so both engines answer with the same weights); refused first as check_loadable refuses."""
    check_loadable(model, plan)
    options: dict[str, Any] = {
        "model": path,
        # the dtype of the matmuls: the quantised base's compute dtype, or the unquantised weights' own
        "dtype": str(plan.compute_dtype if plan.quantize_4bit else plan.weight_dtype).removeprefix("torch."),
        "trust_remote_code": model.trust_remote_code,
        "enable_lora": True,
        "max_loras": settings.max_loras,
        "max_lora_rank": lora_rank_reserved(settings.max_lora_rank),
        "gpu_memory_utilization": settings.gpu_memory_utilization,
    }
    if settings.max_model_len is not None:
        options["max_model_len"] = settings.max_model_len
    if plan.quantize_4bit:
        options["quantization"] = "bitsandbytes"  # quantised in flight, as QLoRA's base was for training
    return options
