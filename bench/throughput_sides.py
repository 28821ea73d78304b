"""The two sides of bench/train_throughput.py, each run in its own process.

Baseline: LlamaBoard's web-UI defaults reproduced with HF Trainer + PEFT (+ bitsandbytes NF4
with --quant 4bit): pad to the longest example of each batch of 2, accumulation 8, cutoff
2048, gradient checkpointing on, LoRA r 8 on all linear layers, loss over full logits.
Ours: the studio's training loop with its defaults for the device, or a variant with one
lever turned off (VARIANTS), to measure what each lever is worth.
Both sides see the same examples in the same order, so their per-step losses are comparable.
"""

from __future__ import annotations

import random
import resource
import tempfile
import threading
import time
from pathlib import Path

import torch

from studio.data.tokenize import IGNORE_INDEX, Encoded

BATCH, ACCUMULATION, CUTOFF, LR, SEED = 2, 8, 2048, 1e-4, 42

# name -> (TrainingConfig overrides, QuantizationConfig overrides, patch applied in the child process)
VARIANTS = {
    "ours": ({}, {}, None),
    "ours-padded": ({"packing": False}, {}, None),
    "ours-padded-ungrouped": ({"packing": False}, {}, "ungrouped"),
    "ours-plain-ce": ({}, {}, "plain_ce"),
    "ours-full-logits": ({}, {}, "full_logits"),
    "ours-gc": ({"gradient_checkpointing": "on"}, {}, None),
    "ours-no-gc": ({"gradient_checkpointing": "off"}, {}, None),
    "ours-no-liger": ({"liger_kernels": False, "compile": "off"}, {"cache_dequantized": "off"}, None),
    "ours-eager": ({"compile": "off"}, {"cache_dequantized": "off"}, None),  # CUDA: no compile, no weight cache
    "ours-cached": ({"compile": "off"}, {"cache_dequantized": "on"}, None),
    "ours-cached-no-gc": ({"gradient_checkpointing": "off", "compile": "off"}, {"cache_dequantized": "on"}, None),
    "ours-compile": ({"compile": "on"}, {"cache_dequantized": "off"}, None),
    "ours-cached-compile": ({"compile": "on"}, {"cache_dequantized": "on"}, None),
    "ours-cached-no-gc-compile": ({"compile": "on", "gradient_checkpointing": "off"}, {"cache_dequantized": "on"}, None),
    "ours-one-lane": ({"micro_batch_lanes": 1}, {}, None),
    "ours-bf16": ({"precision": "bf16"}, {}, None),
    "ours-fp32": ({"precision": "fp32"}, {}, None),
    "ours-peft-cast": ({}, {}, "peft_cast"),  # under autocast: peft casts each LoRA input to fp32 (a copy kept per layer)
    "ours-unbalanced": ({}, {}, "unbalanced"),  # consecutive groups handed to whichever lane is free
    "ours-plain-mlp": ({}, {}, "plain_mlp"),  # CPU: MLPs keep silu(gate) for the backward pass
    "ours-repeat-kv": ({}, {}, "repeat_kv"),  # CPU attention: key/value heads copied per query head
    "ours-head-chunk-small": ({}, {}, "head_chunk_small"),  # the chunk size used under glibc malloc
    "ours-system-malloc": ({}, {}, None),  # glibc malloc instead of tcmalloc (see train_throughput.run_side)
    "ours-tokens-256": ({"micro_batch_tokens": 256}, {}, None),
    "ours-tokens-512": ({"micro_batch_tokens": 512}, {}, None),
    "ours-tokens-768": ({"micro_batch_tokens": 768}, {}, None),
    "ours-tokens-1024": ({"micro_batch_tokens": 1024}, {}, None),
    "ours-tokens-2048": ({"micro_batch_tokens": 2048}, {}, None),
    "ours-tokens-4096": ({"micro_batch_tokens": 4096}, {}, None),
}

QWEN15_18B = dict(  # Qwen1.5-1.8B(-Chat)'s config.json, the tutorial's model
    hidden_size=2048, intermediate_size=5504, num_hidden_layers=24, num_attention_heads=16,
    num_key_value_heads=16, vocab_size=151936, max_position_embeddings=32768, rope_theta=1e6,
    rms_norm_eps=1e-6, tie_word_embeddings=False, hidden_act="silu",
)


# -- models and data ------------------------------------------------------------------


def build_qwen15_architecture(folder: Path) -> Path:
    """Qwen1.5-1.8B's exact shapes with random bf16 weights: speed does not depend on the weights."""
    from transformers import AutoModelForCausalLM, Qwen2Config

    torch.manual_seed(SEED)
    config = Qwen2Config(**QWEN15_18B, torch_dtype="bfloat16")
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):  # random init of 1.8B weights: seconds on a GPU
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    return folder


def synthetic_examples(count: int, vocab: int) -> list[Encoded]:
    """Token counts shaped like alpaca_gpt4_zh under the Qwen tokenizer: ~200 tokens on average,
    a long right tail, the prompt about a third of each example."""
    rng = random.Random(SEED)
    examples = []
    for _ in range(count):
        total = int(min(CUTOFF, max(24, rng.lognormvariate(5.1, 0.55))))
        prompt = max(8, int(total * rng.uniform(0.15, 0.5)))
        ids = [rng.randrange(100, vocab - 100) for _ in range(total)]
        examples.append(Encoded(ids, [IGNORE_INDEX] * prompt + ids[prompt:], False))
    return examples


def demo_conversations(count: int) -> list[list[dict]]:
    from studio.config import DataConfig
    from studio.data.prepare import load_conversations

    return [c for loaded in load_conversations(DataConfig(cutoff_len=CUTOFF)) for c in loaded.examples][:count]


def demo_examples(tokenizer, count: int) -> list[Encoded]:
    from studio.config import DataConfig
    from studio.data.prepare import tokenize_conversations

    conversations = demo_conversations(count)
    examples = tokenize_conversations(tokenizer, conversations, DataConfig(cutoff_len=CUTOFF)).examples
    assert len(examples) == len(conversations), "a demo conversation was skipped: the sides would differ"
    return examples


def ordered_like_ours(examples: list) -> list:
    """The order the studio's schedule visits them in, so the other sides see the same batches."""
    from studio.training.batches import StepSchedule

    schedule = StepSchedule(len(examples), BATCH, ACCUMULATION, 1, None, SEED)
    steps = range(schedule.steps_per_epoch)
    return [examples[i] for step in steps for batch in schedule.micro_batches(step) for i in batch]


# -- measuring ------------------------------------------------------------------------


class PeakMemory:
    """Peak RSS of this process; on CUDA also max allocated and the highest nvidia-smi reading."""

    def __init__(self, device: str):
        self.device, self.smi_peak_mib, self._stop = device, None, threading.Event()
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            threading.Thread(target=self._poll, daemon=True).start()

    def _poll(self) -> None:
        from studio.gpu_monitor import read_gpus

        while not self._stop.wait(0.2):
            readings = read_gpus()
            if readings:
                self.smi_peak_mib = max(self.smi_peak_mib or 0, readings[0].used_mib)

    def report(self) -> dict:
        self._stop.set()
        result = {"peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
        if self.device == "cuda":
            result["cuda_max_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
            result["nvidia_smi_peak_mib"] = self.smi_peak_mib
        return result


def plan_for(args, training=None):
    from studio.config import QuantizationConfig, TrainingConfig
    from studio.modeling.compute import resolve_plan

    training = training or TrainingConfig(precision=args.precision)
    return resolve_plan(QuantizationConfig(method=args.quant), training, cuda=args.device == "cuda")


def _examples(args, model, model_path: str) -> list[Encoded]:
    from studio.config import ModelConfig
    from studio.modeling.loader import load_tokenizer

    count = args.steps * BATCH * ACCUMULATION
    if args.data == "synthetic":
        return synthetic_examples(count, model.config.vocab_size)
    return demo_examples(load_tokenizer(ModelConfig(name_or_path=model_path), model_path), count)


def _setup_baseline(args):
    """LLaMA-Factory's preparation (model/model_utils/checkpointing.py, model/adapter.py): frozen
    weights keep their dtype, reentrant gradient checkpointing, input grads on, LoRA in fp32."""
    from studio.config import LoraConfig, ModelConfig
    from studio.modeling.loader import attach_lora, load_base_model, resolve_model_path

    plan = plan_for(args)
    model_config = ModelConfig(name_or_path=args.model_path)
    path = resolve_model_path(model_config)
    torch.manual_seed(SEED)
    model = load_base_model(model_config, path, plan)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    model.enable_input_require_grads()
    model.config.use_cache = False
    model = attach_lora(model, LoraConfig())
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.float()
    return model, _examples(args, model, path), plan


def _setup_ours(args, training, quantization_overrides: dict):
    from studio.config import LoraConfig, ModelConfig, QuantizationConfig
    from studio.modeling.loader import resolve_model_path, skip_bitsandbytes
    from studio.modeling.trainable import load_trainable_model

    plan = plan_for(args, training)
    if not plan.quantize_4bit:
        skip_bitsandbytes()
    model_config = ModelConfig(name_or_path=args.model_path)
    path = resolve_model_path(model_config)
    quantization = QuantizationConfig(method=args.quant, **quantization_overrides)
    torch.manual_seed(SEED)
    model = load_trainable_model(
        model=model_config, quantization=quantization, training=training, lora=LoraConfig(), model_path=path,
        plan=plan, info=print,
    )
    return model, _examples(args, model, path), plan


def _result(examples, seconds, first_loss_s, losses, memory, log_times: list[float], finished: float, flops: float) -> dict:
    """`steady_tokens_per_s` leaves out the first step (kernel compilation, allocator and library warm-up)."""
    tokens = sum(len(e.input_ids) for e in examples)
    first_step = sum(len(e.input_ids) for e in ordered_like_ours(examples)[: BATCH * ACCUMULATION])
    steady = (tokens - first_step) / (finished - log_times[0]) if len(log_times) > 1 else None
    return {
        "tokens": tokens, "tokens_per_s": tokens / seconds, "steady_tokens_per_s": steady,
        "samples_per_s": len(examples) / seconds, "seconds": seconds,
        "first_loss_s": first_loss_s, "losses": losses, "model_flops": flops, **memory.report(),
    }


def _lora_rank() -> int:
    from studio.config import LoraConfig

    return LoraConfig().rank  # every side trains with the default adapter


def _baseline_flops(model, examples: list[Encoded]) -> float:
    """Padded batches of 2 in order, recomputed forward, logits at every position."""
    from model_flops import Shapes, training_flops

    widths = [max(len(e.input_ids) for e in examples[i : i + BATCH]) for i in range(0, len(examples), BATCH)]
    rows = [width for width in widths for _ in range(BATCH)]
    return training_flops(Shapes.of(model.config), rows, sum(rows), _lora_rank(), recompute=True)


def _ours_flops(trainer, model, examples: list[Encoded], full_logits: bool) -> float:
    """The micro-batches the trainer ran, packed or padded, recomputed or not."""
    from model_flops import Shapes, training_flops
    from studio.training.batches import predicted_tokens

    rows = []
    for step in range(trainer.schedule.total_steps):
        step_examples = [examples[i] for batch in trainer.schedule.micro_batches(step) for i in batch]
        for group in (g for lane in trainer.token_losses.lane_plans(step_examples) for g in lane):
            widths = [len(e.input_ids) for e in group]
            rows += widths if trainer.token_losses.packing else [max(widths)] * len(group)
    head_rows = sum(rows) if full_logits else predicted_tokens(examples)
    recompute = trainer.config.use_gradient_checkpointing(trainer.plan.device)
    return training_flops(Shapes.of(model.config), rows, head_rows, _lora_rank(), recompute)


# -- the sides ------------------------------------------------------------------------


def run_baseline(args, process_started: float) -> dict:
    from torch.utils.data import SequentialSampler
    from transformers import Trainer, TrainerCallback, TrainingArguments

    memory = PeakMemory(args.device)
    model, examples, plan = _setup_baseline(args)
    examples = ordered_like_ours(examples)
    dataset = [{"input_ids": e.input_ids, "labels": e.labels} for e in examples]
    first_loss, losses, log_times = [], [], []

    class Losses(TrainerCallback):
        def on_log(self, _args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                losses.append(logs["loss"])
                first_loss.append(time.time() - process_started)
                log_times.append(time.perf_counter())

    class InOrder(Trainer):  # the default sampler shuffles; ours already did, identically for both sides
        def _get_train_sampler(self, *unused, **kw):
            return SequentialSampler(self.train_dataset)

    with tempfile.TemporaryDirectory() as out:
        training_args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=BATCH, gradient_accumulation_steps=ACCUMULATION,
            max_steps=args.steps, learning_rate=LR, logging_steps=1, save_strategy="no", report_to="none",
            gradient_checkpointing=False,  # already on in the model, reentrant as LLaMA-Factory has it (see _setup_baseline)
            use_cpu=args.device == "cpu", seed=SEED, disable_tqdm=True, remove_unused_columns=False,
            dataloader_num_workers=0, bf16=plan.weight_dtype == torch.bfloat16, lr_scheduler_type="cosine",
        )
        trainer = InOrder(model=model, args=training_args, train_dataset=dataset, callbacks=[Losses()], data_collator=pad_to_longest)
        started = time.perf_counter()
        trainer.train()
        finished = time.perf_counter()
    flops = _baseline_flops(model, examples)
    return _result(examples, finished - started, first_loss[0] if first_loss else None, losses, memory, log_times, finished, flops)


def pad_to_longest(features: list[dict]) -> dict:
    """What DataCollatorForSeq2Seq(padding='longest', label_pad_token_id=-100) produces, right padding."""
    width = max(len(f["input_ids"]) for f in features)
    return {
        "input_ids": torch.tensor([f["input_ids"] + [0] * (width - len(f["input_ids"])) for f in features]),
        "attention_mask": torch.tensor([[1] * len(f["input_ids"]) + [0] * (width - len(f["input_ids"])) for f in features]),
        "labels": torch.tensor([f["labels"] + [IGNORE_INDEX] * (width - len(f["labels"])) for f in features]),
    }


def run_ours(args, process_started: float, variant: str) -> dict:
    from studio.config import LoraConfig, TrainingConfig
    from studio.training.loop import Trainer

    overrides, quantization_overrides, patch = VARIANTS[variant]
    training = TrainingConfig(
        learning_rate=LR, max_steps=args.steps, batch_size=BATCH, gradient_accumulation_steps=ACCUMULATION,
        logging_steps=1, eval_steps=10**9, save_steps=10**9, seed=SEED, **({"precision": args.precision} | overrides),
    )
    memory = PeakMemory(args.device)
    if patch:
        _PATCHES[patch]()
    model, examples, plan = _setup_ours(args, training, quantization_overrides)
    first_loss, losses, log_times = [], [], []

    def emit(event):
        if event.type == "step":
            losses.append(event.loss)
            first_loss.append(time.time() - process_started)
            log_times.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(
            model, train=examples, val=[], config=training, lora=LoraConfig(), plan=plan, checkpoints_dir=Path(out),
            emit=emit, abort=threading.Event(),
        )
        started = time.perf_counter()
        trainer.run()
        finished = time.perf_counter()
    flops = _ours_flops(trainer, model, examples, full_logits=patch == "full_logits")
    return _result(examples, finished - started, first_loss[0] if first_loss else None, losses, memory, log_times, finished, flops)


# -- levers turned off, one at a time ---------------------------------------------------


def _ungrouped() -> None:
    from studio.training import token_losses

    token_losses.group_by_length = lambda examples, size: [examples[i : i + size] for i in range(0, len(examples), size)]


def _plain_ce() -> None:
    from studio.training import token_losses

    token_losses.fused_head_supported = lambda model: False
    original = token_losses.TokenLosses.__init__

    def init(self, *a, **kw):
        original(self, *a, **kw)
        self.fused = False

    token_losses.TokenLosses.__init__ = init


def _full_logits() -> None:
    """Logits and cross-entropy over every position, as a plain causal-LM head does."""
    import torch.nn.functional as F

    from studio.training import token_losses

    def call(self, examples):
        hidden, targets = self._packed(examples) if self.packing else self._padded(examples)
        targets = targets.to(hidden.device)
        losses = F.cross_entropy(self.head(hidden).float(), targets, ignore_index=IGNORE_INDEX, reduction="none")
        return losses[targets != IGNORE_INDEX]

    token_losses.TokenLosses.__call__ = call


def _unbalanced() -> None:
    """The lane plan before lanes got shares of equal work: the step cut into consecutive groups,
    each group a plan of its own, so whichever lane is free takes the next."""
    from studio.training import token_losses
    from studio.training.packing import split_by_tokens

    token_losses.plan_lanes = lambda examples, budget, lanes: [[g] for g in split_by_tokens(examples, budget, lanes)]


def _plain_mlp() -> None:
    from studio.modeling import lean_mlp

    lean_mlp.use_lean_mlps = lambda model: 0


def _repeat_kv() -> None:
    from studio.training import varlen_attention

    grouped = varlen_attention._causal_sdpa

    def repeated(query, key, value, *rest):
        groups = query.shape[1] // key.shape[1]
        return grouped(query, key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1), *rest)

    varlen_attention._causal_sdpa = repeated


def _head_chunk_small() -> None:
    from studio.training import label_loss

    label_loss.chunk_elements = lambda device: label_loss.CHUNK_ELEMENTS.get(device, 2**22)


def _peft_cast() -> None:
    import studio.modeling.trainable as trainable

    trainable.keep_inputs_uncast = lambda model: None


_PATCHES = {"peft_cast": _peft_cast, "ungrouped": _ungrouped, "plain_ce": _plain_ce, "full_logits": _full_logits, "head_chunk_small": _head_chunk_small, "unbalanced": _unbalanced, "plain_mlp": _plain_mlp, "repeat_kv": _repeat_kv}
