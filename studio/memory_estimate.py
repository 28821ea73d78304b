"""How much memory each device of a run needs, before it starts: shown under Preview command and in the Train
tab's fit line (studio.estimates.fit).

Counted from the model's config.json on a meta-device copy of the model (no weights read): the frozen
base at the bytes its quantisation stores per weight, the adapter with its gradient and the optimizer's state
(AdamW: two fp32 moments; less for the others, `optimizer_state_share`), and an allowance for the activations
of the largest micro-batches (`tokens_in_flight`: from the data's own lengths when they are known).
With distributed.strategy fsdp the decoder layers and their adapter are divided over the processes; embeddings and
output layer stay whole on each (sharding.py), as do a vision-language model's vision tower and projector and what
trains in them, and two layers at a time are gathered whole while they compute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.config import FinetuningConfig, LoraConfig, ModelConfig, RunConfig
from studio.config.names import model_source
from studio.locales import Joined, Message, say

GIB = 2**30
NF4_BYTES = 0.5 + 4 / 64  # 4 bits a weight and one fp32 scale per block of 64 (double quantisation saves ~0.4 bit)
ADAPTER_BYTES = 4 + 4 + 8  # fp32 weight, its gradient, AdamW's two moments
BNB_BLOCK = 256  # bitsandbytes' 8-bit optimizer state: an fp32 scale per block of 256 values
INT8_BYTES = 1 + 4 / 64  # LLM.int8: a byte a weight and an fp32 scale per row (counted per 64 to stay on the safe side)
CUDA_CONTEXT_GIB = 0.5  # kernels and the caching allocator's reserve
# a CPU worker's resident memory beyond what is counted here (torch's libraries, tokenizer, data, what the
# allocator keeps of the steps' varying tensors): the embedded model's 2-process runs (one thread each) peaked at
# 1552 MiB (ddp) and 1467 MiB (fsdp) per rank against 0.62 and 0.51 GiB counted; one process with both cores of
# this 2-core machine peaked at 1170 MiB (one lane) and 1322 MiB (two) on a tiny model (~1 MiB of weights), the
# resident size levelling off after ~50 steps (docs/benchmarks.md, bench/estimate_accuracy.py)
CPU_RUNTIME_GIB = 0.9
CPU_RUNTIME_ALL_CORES_GIB = 1.15
CPU_RUNTIME_PER_LANE_GIB = 0.15
# bytes kept for backward per token and layer, in hidden-size units at 2-byte activations: attention and MLP
# inputs and outputs (~12 hidden) and the MLP's gate/up products (3 x intermediate, stated separately)
ACTIVATION_HIDDEN_FACTOR = 12
# a run's peak comes at its largest step: with packing, a step of n examples whose lengths spread by s holds up
# to ~2.5 s sqrt(n) tokens above the mean step in a few hundred steps (and the CPU allocator keeps what it held)
LARGEST_STEP_SPREADS = 2.5
# Activations per token in flight relative to SFT's, measured on the embedded model on CPU with each stage's demo
# recipe (bench/memory_estimate_check.py, docs/benchmarks.md): a preference pair keeps both answers and their
# log-probabilities for the loss; pretraining rows fill every micro-batch and every token is a label.
# rm runs each pair as two whole documents (as dpo without a shared prompt); ppo and grpo train on sampled answers
# as sft trains on answers, with the sampling's KV cache counted apart (`_sampling_bytes`).
STAGE_ACTIVATION_FACTOR = {"sft": 1.0, "dpo": 1.8, "kto": 1.1, "pt": 1.9, "rm": 1.8, "ppo": 1.0, "grpo": 1.0}


@dataclass(frozen=True)
class ModelShape:
    layer_params: int  # decoder layers (sharded by fsdp)
    whole_params: int  # embeddings, output layer, final norm (whole on every device)
    adapter_params: int  # LoRA weights for lora.rank on lora.target_modules
    hidden: int
    intermediate: int
    layers: int
    kv_width: int = 0  # key/value heads x head size: what one layer caches per token while sampling
    trained_params: int | None = None  # full and freeze: the model's own weights that train (None: an adapter)
    vocab: int = 0  # output rows: the loss's chunks of logits are this wide
    whole_adapter_params: int = 0  # of adapter_params, outside the decoder layers (a vision tower's LoRA, a projector)


@dataclass(frozen=True)
class DataLengths:
    """Token lengths of the training split as its stage trains them (studio.estimates.data_tokens)."""

    mean: float
    longest: int
    spread: float = 0.0  # standard deviation of the lengths: how far the largest steps are above the mean


@dataclass(frozen=True)
class MemoryEstimate:
    weights_gib: float
    dequantized_gib: float  # bf16 copies of the 4-bit layers (quantization.cache_dequantized)
    adapter_gib: float
    activations_gib: float
    overhead_gib: float
    processes: int
    sharded: bool
    device: str  # "cuda" or "cpu"
    reward_model_gib: float = 0.0  # ppo: the reward model, a second copy of the base with its adapter
    sampling_gib: float = 0.0  # ppo, grpo: the KV cache of the answers sampled at once

    @property
    def total_gib(self) -> float:
        parts = (self.weights_gib, self.dequantized_gib, self.adapter_gib, self.activations_gib, self.overhead_gib)
        return sum(parts) + self.reward_model_gib + self.sampling_gib

    def describe(self) -> Message:
        cuda = self.device == "cuda"
        parts = [("memory.base_weights", self.weights_gib)]
        if self.dequantized_gib:
            parts.append(("memory.dequantized_copies", self.dequantized_gib))
        parts.append(("memory.adapter_and_optimizer", self.adapter_gib))
        parts.append(("memory.activations", self.activations_gib))
        if self.sampling_gib:
            parts.append(("memory.sampling_cache", self.sampling_gib))
        if self.reward_model_gib:
            parts.append(("memory.reward_model", self.reward_model_gib))
        parts.append(("memory.cuda_context" if cuda else "memory.python_and_torch", self.overhead_gib))
        said = [say(key, size=size_text(gib)) for key, gib in parts]
        summed = Joined("list.plus", said)
        spread = say("memory.sharded", processes=self.processes) if self.sharded else ""
        key = "memory.per_gpu" if cuda else "memory.per_process"
        return say(key, spread=spread, parts=summed, total=self.total_gib)


def size_text(gib: float) -> str:
    """A size as people read it: GiB with two decimals from 1 GiB, else whole MiB."""
    return f"{gib:.2f} GiB" if gib >= 1 else f"{gib * 1024:.0f} MiB"


def estimate_memory(
    config: RunConfig,
    model_dir: Path,
    *,
    device: str,
    processes: int,
    gpu_gib: float | None = None,
    lengths: DataLengths | None = None,
) -> MemoryEstimate:
    """The estimate for `config` on the model whose config.json is in `model_dir`; `gpu_gib`: the memory of one
    of the run's GPUs, which decides whether 'auto' caches dequantised weights; `lengths`: the training split's
    token lengths, when known (else every example is taken to fill cutoff_len)."""
    shape = model_shape(model_dir, config.lora.rank, config.lora.target_modules, config.finetuning)
    quantized = _quantizes(config, device) and shape.trained_params is None
    full_bytes = 4 if config.training.precision == "fp32" else 2
    bytes_per_weight = (INT8_BYTES if config.quantization.method == "8bit" else NF4_BYTES) if quantized else full_bytes
    sharded = processes > 1 and config.distributed.strategy == "fsdp"
    share = processes if sharded else 1
    whole_bytes = 2 if quantized else bytes_per_weight  # embeddings and output layer are never quantised
    weights = shape.layer_params * bytes_per_weight / share + shape.whole_params * whole_bytes
    trained, per_trained = shape.adapter_params, float(ADAPTER_BYTES)
    whole_trained = shape.whole_adapter_params
    if shape.trained_params is not None:  # the trained weights are counted with their optimizer state instead
        trained, whole_trained = shape.trained_params, 0  # (fsdp refuses full and freeze: nothing divides them)
        weights -= trained * bytes_per_weight / share
        per_trained = ADAPTER_BYTES / 2 if config.training.pure_bf16 and bytes_per_weight == 2 else ADAPTER_BYTES
    moments = (1 + optimizer_state_share(config, shape)) / 2  # half of per_trained is AdamW's two moments
    if sharded:  # the layer computing now and the one gathered ahead of it are whole
        weights += 2 * shape.layer_params / shape.layers * bytes_per_weight
    dequantized = 0.0
    if quantized and _caches(config.quantization.cache_dequantized, shape.layer_params * 2, gpu_gib):
        dequantized = shape.layer_params * 2 / share
    lanes = _lanes(config, device, processes, sharded)
    in_flight = tokens_in_flight(config, device, lanes, processes, lengths)
    tokens = in_flight * STAGE_ACTIVATION_FACTOR.get(config.training.stage, 1.0)
    per_token_layer = (ACTIVATION_HIDDEN_FACTOR * shape.hidden + 3 * shape.intermediate) * 2
    if config.training.use_gradient_checkpointing(device):  # one layer's activations, and every layer's input
        activations = tokens * (per_token_layer + shape.layers * shape.hidden * 2)
    else:
        activations = tokens * per_token_layer * shape.layers
    activations += _loss_chunk_bytes(shape.vocab, in_flight, lanes, device)
    reward_model = 0.0
    if config.training.stage == "ppo":  # loaded as the base is, frozen: weights and adapter, no optimizer state
        reward_model = weights + shape.adapter_params * 4
    return MemoryEstimate(
        reward_model_gib=reward_model / GIB,
        sampling_gib=_sampling_bytes(config, shape, device, bytes_per_weight) / GIB,
        weights_gib=weights / GIB,
        dequantized_gib=dequantized / GIB,
        adapter_gib=((trained - whole_trained) / share + whole_trained) * per_trained * moments / GIB,
        activations_gib=activations / GIB,
        overhead_gib=CUDA_CONTEXT_GIB if device == "cuda" else _cpu_runtime_gib(processes, lanes),
        processes=processes,
        sharded=sharded,
        device=device,
    )


def optimizer_state_share(config: RunConfig, shape: ModelShape) -> float:
    """The optimizer's state per trained weight as a share of AdamW's two moments. The trained matrices' shorter
    side is lora.rank for an adapter, about hidden for the model's own weights."""
    name, short = config.optimizer.name, config.lora.rank if shape.trained_params is None else shape.hidden
    if name == "adamw_8bit":  # a byte a moment for four, and an fp32 scale per block
        return (1 + 4 / BNB_BLOCK) / 4
    if name == "adafactor":  # no first moment; the second factored into a row and a column of each matrix
        return (1 / short + 1 / shape.hidden) / 2
    if name in ("galore", "apollo"):  # both moments of the gradient projected to the optimizer's rank
        return min(1.0, (config.optimizer.galore_rank if name == "galore" else config.optimizer.apollo_rank) / short)
    if name == "badam":  # one block of layers at a time: its moments and an fp32 copy of its weights
        return 1.5 / shape.layers
    return 1.0


def _sampling_bytes(config: RunConfig, shape: ModelShape, device: str, bytes_per_weight: float) -> float:
    """ppo and grpo: every answer of a step (a ppo buffer) sampled at once, each caching keys and values for its
    prompt (up to cutoff_len) and its answer (max_new_tokens); 0 for the other stages."""
    training = config.training
    if training.stage not in ("ppo", "grpo"):
        return 0.0
    rows = training.batch_size * training.gradient_accumulation_steps
    rows *= config.grpo.num_generations if training.stage == "grpo" else config.ppo.ppo_buffer_size
    element = 2 if device == "cuda" or bytes_per_weight == 2 else 4
    per_token = 2 * shape.layers * shape.kv_width * element
    return rows * (config.data.cutoff_len + config.generation.max_new_tokens) * per_token


def tokens_in_flight(
    config: RunConfig, device: str, lanes: int, processes: int = 1, lengths: DataLengths | None = None
) -> float:
    """Tokens whose activations are held at once, at the largest micro-batches. Packed: each lane's micro-batch
    of up to micro_batch_tokens, but no more than the process's share of the largest step's examples (a small
    batch of short examples fills less); padded: batch_size examples at the longest length, in each busy lane."""
    training, cutoff = config.training, config.data.cutoff_len
    longest = min(cutoff, lengths.longest) if lengths else cutoff
    examples = training.batch_size * training.gradient_accumulation_steps / max(1, processes)
    if not training.packing:  # the step's micro-batches, one a lane at a time, padded to the longest
        return float(min(lanes * training.batch_size, math.ceil(examples)) * longest)
    if lengths:  # the largest of a few hundred steps: the mean step and 2.5 standard deviations of a step's sum
        step = examples * min(cutoff, lengths.mean) + LARGEST_STEP_SPREADS * examples**0.5 * lengths.spread
    else:
        step = examples * cutoff
    step = min(step, examples * longest)
    return float(min(lanes * training.tokens_per_forward(device), max(step, longest)))


def _loss_chunk_bytes(vocab: int, rows: float, lanes: int, device: str) -> float:
    """A chunk of the label loss's logits in each lane (studio.training.label_loss): computed in the compute
    dtype, copied to fp32, and their gradient cast back, about 8 bytes a logit, for at most `rows` rows."""
    from studio.training.label_loss import CHUNK_ELEMENTS, CPU_CHUNK_ELEMENTS_WITH_TCMALLOC

    chunk = CHUNK_ELEMENTS.get(device, CHUNK_ELEMENTS["cpu"])
    if device == "cpu" and _worker_uses_tcmalloc():
        chunk = CPU_CHUNK_ELEMENTS_WITH_TCMALLOC
    return 8.0 * min(lanes * chunk, rows * vocab)


def _worker_uses_tcmalloc() -> bool:
    """Whether a CPU worker spawned from here would run on tcmalloc (studio.allocator)."""
    import os

    from studio.allocator import fast_allocator

    return fast_allocator(os.environ) is not None


def _cpu_runtime_gib(processes: int, lanes: int) -> float:
    """A CPU worker's own resident memory: one of several processes (a thread each) keeps less than a single
    process computing on all the cores, and each further lane adds its threads' share."""
    base = CPU_RUNTIME_GIB if processes > 1 else CPU_RUNTIME_ALL_CORES_GIB
    return base + CPU_RUNTIME_PER_LANE_GIB * (lanes - 1)


def _quantizes(config: RunConfig, device: str) -> bool:
    """Whether the base is stored quantised, as compute.resolve_plan decides: 4bit and 8bit on any device
    (bitsandbytes' CPU backend too), auto on CUDA; never for full and freeze."""
    method = config.quantization.method
    return not config.finetuning.trains_whole_model and (
        method in ("4bit", "8bit") or (method == "auto" and device == "cuda")
    )


def _lanes(config: RunConfig, device: str, processes: int, sharded: bool) -> int:
    """Lanes of each process: fsdp turns them off; several CPU processes share the cores (torchrun's ranks)."""
    import os

    from studio.training.lanes import lanes_for

    cores = max(1, (os.cpu_count() or 1) // processes)
    every_weight = config.finetuning.method == "full"
    return 1 if sharded else lanes_for(device, config.training.micro_batch_lanes, cores, every_weight)


def _caches(setting: str, copy_bytes: float, gpu_gib: float | None) -> bool:
    """What dequantized_cache.should_cache decides, from the sizes alone."""
    from studio.modeling.dequantized_cache import AUTO_SHARE_OF_GPU

    if setting != "auto":
        return setting == "on"
    return gpu_gib is not None and copy_bytes <= AUTO_SHARE_OF_GPU * gpu_gib * GIB


def model_shape(
    model_dir: Path, rank: int, targets: list[str], finetuning: FinetuningConfig | None = None
) -> ModelShape:
    """Parameter counts of the model in `model_dir`, from its config.json alone; `finetuning` full or freeze: how
    many of its own weights train; lora or oft on a vision-language model: which of its parts the adapter takes."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

    from studio.modeling.vision import vision_family

    config = AutoConfig.from_pretrained(str(model_dir))
    # a vision-language model's vision tower and projector count as weights outside the decoder layers
    model_class = AutoModelForImageTextToText if vision_family(model_dir) else AutoModelForCausalLM
    with torch.device("meta"):
        model = model_class.from_config(config)
    decoder = model.get_decoder()
    layer_params = sum(p.numel() for p in decoder.layers.parameters())
    whole_params = sum(p.numel() for p in model.parameters()) - layer_params
    adapter, whole_adapter = _vision_adapter_params(model, rank, targets, finetuning, decoder.layers)
    if adapter is None:
        adapter = sum(
            rank * (module.in_features + module.out_features)
            for name, module in decoder.layers.named_modules()
            if isinstance(module, torch.nn.Linear) and _targeted(name, targets)
        )
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return ModelShape(
        trained_params=_trained_params(model, finetuning),
        layer_params=layer_params,
        whole_params=whole_params,
        adapter_params=adapter,
        whole_adapter_params=whole_adapter,
        hidden=text.hidden_size,
        intermediate=getattr(text, "intermediate_size", 4 * text.hidden_size),
        layers=len(decoder.layers),
        vocab=getattr(text, "vocab_size", 0) or 0,
        kv_width=_kv_heads(text) * (getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads),
    )


def _vision_adapter_params(
    model: Any, rank: int, targets: list[str], finetuning: FinetuningConfig | None, layers: Any
) -> tuple[int | None, int]:
    """What an adapter trains in a vision-language model (None for a text model): the modules vision_parts gives it
    (the vision tower's blocks too when freeze_vision_tower is off) and, when freeze_multi_modal_projector is off,
    the projector whole; and how much of it lies outside the decoder `layers` (whole on every fsdp rank)."""
    import torch

    from studio.modeling.sources import ModelLoadError
    from studio.modeling.vision_parts import adapter_config, inside, parts_of

    parts = parts_of(model)
    if parts is None:
        return None, 0
    finetuning = finetuning or FinetuningConfig()
    try:
        lora = adapter_config(model, finetuning, LoraConfig(rank=rank, target_modules=targets))
    except ModelLoadError:  # nothing to adapt: refused when the run starts, nothing to count here
        return 0, 0
    modules = dict(model.named_modules())
    in_layers = {id(m) for m in layers.modules()}
    low_rank = {
        name: rank * (m.in_features + m.out_features)
        for name in lora.target_modules
        if isinstance(m := modules[name], torch.nn.Linear)
    }
    whole = () if finetuning.freeze_multi_modal_projector else parts.projector
    projector = sum(p.numel() for name, p in model.named_parameters() if inside(name, whole))
    outside = sum(count for name, count in low_rank.items() if id(modules[name]) not in in_layers)
    return sum(low_rank.values()) + projector, outside + projector


def _trained_params(model: Any, finetuning: FinetuningConfig | None) -> int | None:
    if finetuning is None or not finetuning.trains_whole_model:
        return None
    from studio.modeling.methods import attach_method

    model.requires_grad_(False)
    attach_method(model, finetuning, LoraConfig())  # on the meta copy: only which weights would train
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _kv_heads(text: Any) -> int:
    return getattr(text, "num_key_value_heads", None) or text.num_attention_heads


def _targeted(name: str, targets: list[str]) -> bool:
    """peft's rule for a list of names: a module whose name is, or ends with '.', one of them; 'all': every linear."""
    if targets == ["all"]:
        return True
    return any(name == t or name.endswith(f".{t}") for t in targets)


def local_config_dir(model: ModelConfig) -> Path | None:
    """The folder holding the model's config.json on this machine (the converted embedded model, a local folder,
    the model.hub's cache), else None: nothing is downloaded or converted for an estimate."""
    from huggingface_hub import try_to_load_from_cache

    from studio.modeling.embedded import converted_model_dir
    from studio.modeling.from_modelscope import cached_folder

    source = model_source(model.name_or_path)
    if source.kind == "embedded":
        return converted_model_dir()
    if source.path is not None:
        return source.path if (source.path / "config.json").is_file() else None
    if model.hub == "modelscope":
        folder = cached_folder(source.name)
        return folder if folder is not None and (folder / "config.json").is_file() else None
    cached = try_to_load_from_cache(source.name, "config.json")
    return Path(cached).parent if isinstance(cached, str) else None
