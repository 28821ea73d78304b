"""The two sides of bench/train_throughput.py, each run in its own process.

Baseline: LlamaBoard's web-UI defaults reproduced with HF Trainer + PEFT (+ bitsandbytes NF4
with --quant 4bit): pad to the longest example of each batch of 2, accumulation 8, cutoff
2048, gradient checkpointing on, LoRA r 8 on all linear layers, loss over full logits.
Ours: the studio's training loop with its defaults for the device, or a variant with one
lever turned off (VARIANTS), to measure what each lever is worth. A variant is data: config
overrides and `Levers`, the studio's own switches; nothing of the studio is patched.
Both sides see the same examples in the same order, so their per-step losses are comparable.
With --method full or freeze every side trains those weights instead of a LoRA adapter (the
baseline makes them trainable as the studio does; LLaMA-Factory through its finetuning_type).
The baseline's freeze runs the backward pass through every layer (HF's checkpointing with input
gradients on), where LLaMA-Factory checkpoints and differentiates only the trainable layers.
"""

from __future__ import annotations

import random
import resource
import sysconfig
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from studio.allocator import allocator_in_use
from studio.data.tokenize import IGNORE_INDEX, Encoded
from studio.training.label_loss import CHUNK_ELEMENTS
from studio.training.levers import Levers

BATCH, ACCUMULATION, CUTOFF, LR, SEED = 2, 8, 2048, 1e-4, 42


@dataclass(frozen=True)
class Variant:
    """What a variant of our side changes: config fields the user has, or levers the user does not."""

    training: dict = field(default_factory=dict)  # TrainingConfig fields
    quantization: dict = field(default_factory=dict)  # QuantizationConfig fields
    levers: Levers = Levers()  # studio/training/levers.py; the defaults are what the studio does
    # the worker's environment on top of the driver's, before the studio's allocator choice
    # (studio/allocator.py): QLORA_STUDIO_ALLOCATOR, glibc's MALLOC_* settings
    environment: dict = field(default_factory=dict)


_UNTUNED = {"QLORA_STUDIO_ALLOCATOR": "system"}
_MMAP_256K = {**_UNTUNED, "MALLOC_MMAP_THRESHOLD_": str(256 * 1024)}

VARIANTS = {
    "ours": Variant(),
    "ours-padded": Variant(training={"packing": False}),
    "ours-padded-ungrouped": Variant(training={"packing": False}, levers=Levers(length_grouping=False)),
    "ours-plain-ce": Variant(levers=Levers(fused_cross_entropy=False)),
    "ours-full-logits": Variant(levers=Levers(label_rows_only=False)),  # logits and cross-entropy at every position
    "ours-gc": Variant(training={"gradient_checkpointing": "on"}),
    "ours-no-gc": Variant(training={"gradient_checkpointing": "off"}),
    "ours-no-liger": Variant(
        training={"liger_kernels": False, "compile": "off"}, quantization={"cache_dequantized": "off"}
    ),
    "ours-eager": Variant(
        training={"compile": "off"}, quantization={"cache_dequantized": "off"}
    ),  # CUDA: no compile, no weight cache
    "ours-cached": Variant(training={"compile": "off"}, quantization={"cache_dequantized": "on"}),
    "ours-cached-no-gc": Variant(
        training={"gradient_checkpointing": "off", "compile": "off"}, quantization={"cache_dequantized": "on"}
    ),
    "ours-compile": Variant(training={"compile": "on"}, quantization={"cache_dequantized": "off"}),
    "ours-cached-compile": Variant(training={"compile": "on"}, quantization={"cache_dequantized": "on"}),
    "ours-cached-no-gc-compile": Variant(
        training={"compile": "on", "gradient_checkpointing": "off"}, quantization={"cache_dequantized": "on"}
    ),
    "ours-one-lane": Variant(training={"micro_batch_lanes": 1}),
    "ours-two-lanes": Variant(training={"micro_batch_lanes": 2}),  # full fine-tuning's default is one lane
    "ours-bf16": Variant(training={"precision": "bf16"}),
    "ours-fp32": Variant(training={"precision": "fp32"}),
    # under autocast: peft casts each LoRA input to fp32 (a copy kept per layer)
    "ours-peft-cast": Variant(levers=Levers(uncast_lora_inputs=False)),
    # consecutive groups handed to whichever lane is free
    "ours-unbalanced": Variant(levers=Levers(balanced_lanes=False)),
    "ours-plain-mlp": Variant(levers=Levers(lean_mlp=False)),  # CPU: MLPs keep silu(gate) for the backward pass
    "ours-repeat-kv": Variant(
        levers=Levers(grouped_kv_attention=False)
    ),  # CPU attention: key/value heads copied per query head
    # the cross-entropy chunk used on CPU under glibc malloc, also under tcmalloc (and on CUDA)
    "ours-head-chunk-small": Variant(levers=Levers(cross_entropy_chunk=CHUNK_ELEMENTS["cpu"])),
    # the worker's allocator (studio/allocator.py); `ours` has tcmalloc where the system has it
    "ours-system-malloc": Variant(environment={"QLORA_STUDIO_ALLOCATOR": "system"}),  # glibc's malloc untuned
    "ours-tuned-malloc": Variant(environment={"QLORA_STUDIO_ALLOCATOR": "glibc"}),  # the default without tcmalloc
    # glibc settings other than the studio's, each on top of the untuned malloc
    "ours-malloc-arenas-2": Variant(environment={**_UNTUNED, "MALLOC_ARENA_MAX": "2"}),
    "ours-malloc-mmap-256k-arenas-2": Variant(environment={**_MMAP_256K, "MALLOC_ARENA_MAX": "2"}),
    "ours-malloc-mmap-256k-padded": Variant(  # small blocks' heaps grow and shrink in steps of 16 / 64 MiB
        environment={**_MMAP_256K, "MALLOC_TRIM_THRESHOLD_": str(64 * 2**20), "MALLOC_TOP_PAD_": str(16 * 2**20)}
    ),
    # mapped blocks madvised for transparent huge pages
    "ours-malloc-mmap-256k-thp": Variant(environment={**_MMAP_256K, "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}),
    "ours-malloc-mmap-1m": Variant(environment={**_UNTUNED, "MALLOC_MMAP_THRESHOLD_": str(2**20)}),
    "ours-malloc-mmap-4m": Variant(environment={**_UNTUNED, "MALLOC_MMAP_THRESHOLD_": str(4 * 2**20)}),
    "ours-malloc-heap-kept": Variant(  # freed activations stay in the heap: mmap only past 32 MiB, no trimming
        environment={**_UNTUNED, "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(2**30)}
    ),
    # gperftools' tcmalloc handing free spans back to the kernel at once (where tcmalloc is installed)
    "ours-tcmalloc-decommit": Variant(environment={"TCMALLOC_AGGRESSIVE_DECOMMIT": "true"}),
    # mimalloc from the PyPI wheel cmeel-mimalloc, where installed in this venv (`pip install cmeel-mimalloc`)
    "ours-mimalloc": Variant(
        environment={
            **_UNTUNED,
            "LD_PRELOAD": str(Path(sysconfig.get_paths()["purelib"]) / "cmeel.prefix/lib/libmimalloc.so"),
        }
    ),
    "ours-tokens-256": Variant(training={"micro_batch_tokens": 256}),
    "ours-tokens-512": Variant(training={"micro_batch_tokens": 512}),
    "ours-tokens-768": Variant(training={"micro_batch_tokens": 768}),
    "ours-tokens-1024": Variant(training={"micro_batch_tokens": 1024}),
    "ours-tokens-2048": Variant(training={"micro_batch_tokens": 2048}),
    "ours-tokens-4096": Variant(training={"micro_batch_tokens": 4096}),
}

QWEN15_18B = dict(  # Qwen1.5-1.8B(-Chat)'s config.json, the tutorial's model
    hidden_size=2048,
    intermediate_size=5504,
    num_hidden_layers=24,
    num_attention_heads=16,
    num_key_value_heads=16,
    vocab_size=151936,
    max_position_embeddings=32768,
    rope_theta=1e6,
    rms_norm_eps=1e-6,
    tie_word_embeddings=False,
    hidden_act="silu",
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
    return resolve_plan(
        QuantizationConfig(method=args.quant), training, cuda=args.device == "cuda", finetuning=args.method
    )


def finetuning_for(args):
    """What every side trains: --method, freeze with --freeze-layers of every module (LLaMA-Factory's defaults)."""
    from studio.config import FinetuningConfig

    return FinetuningConfig(method=args.method, freeze_trainable_layers=args.freeze_layers)


def _examples(args, model, model_path: str) -> list[Encoded]:
    from studio.config import ModelConfig
    from studio.modeling.loader import load_tokenizer

    count = args.steps * BATCH * ACCUMULATION
    if args.data == "synthetic":
        return synthetic_examples(count, model.config.vocab_size)
    return demo_examples(load_tokenizer(ModelConfig(name_or_path=model_path), model_path), count)


def _setup_baseline(args):
    """LLaMA-Factory's preparation (model/model_utils/checkpointing.py, model/adapter.py): frozen
    weights keep their dtype, reentrant gradient checkpointing, input grads on, trained weights in fp32."""
    from studio.config import LoraConfig, ModelConfig
    from studio.modeling.loader import load_base_model
    from studio.modeling.methods import attach_method
    from studio.modeling.sources import resolve_model_path

    plan = plan_for(args)
    model_config = ModelConfig(name_or_path=args.model_path)
    path = resolve_model_path(model_config)
    torch.manual_seed(SEED)
    model = load_base_model(model_config, path, plan)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    model.enable_input_require_grads()
    model.config.use_cache = False
    model = attach_method(model, finetuning_for(args), LoraConfig())
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.float()
    return model, _examples(args, model, path), plan


def ours_training(variant: Variant, steps: int, precision: str = "auto"):
    """Our side's TrainingConfig: the baseline's batch, accumulation, learning rate and seed."""
    from studio.config import TrainingConfig

    return TrainingConfig(
        learning_rate=LR,
        max_steps=steps,
        batch_size=BATCH,
        gradient_accumulation_steps=ACCUMULATION,
        logging_steps=1,
        eval_steps=10**9,
        save_steps=10**9,
        seed=SEED,
        **({"precision": precision} | variant.training),
    )


def _setup_ours(args, training, variant: Variant):
    from studio.config import LoraConfig, ModelConfig, QuantizationConfig
    from studio.modeling.loader import skip_bitsandbytes
    from studio.modeling.sources import resolve_model_path
    from studio.training.trainable import load_trainable_model

    plan = plan_for(args, training)
    if not plan.quantize_4bit:
        skip_bitsandbytes()
    model_config = ModelConfig(name_or_path=args.model_path)
    path = resolve_model_path(model_config)
    quantization = QuantizationConfig(method=args.quant, **variant.quantization)
    torch.manual_seed(SEED)
    model = load_trainable_model(
        model=model_config,
        quantization=quantization,
        training=training,
        lora=LoraConfig(),
        model_path=path,
        plan=plan,
        info=print,
        levers=variant.levers,
        finetuning=finetuning_for(args),
    )
    return model, _examples(args, model, path), plan


def _result(
    examples, seconds, first_loss_s, losses, memory, log_times: list[float], finished: float, flops: float
) -> dict:
    """`steady_tokens_per_s` leaves out the first step (kernel compilation, allocator and library warm-up)."""
    tokens = sum(len(e.input_ids) for e in examples)
    first_step = sum(len(e.input_ids) for e in ordered_like_ours(examples)[: BATCH * ACCUMULATION])
    steady = (tokens - first_step) / (finished - log_times[0]) if len(log_times) > 1 else None
    return {
        "tokens": tokens,
        "tokens_per_s": tokens / seconds,
        "steady_tokens_per_s": steady,
        "samples_per_s": len(examples) / seconds,
        "seconds": seconds,
        "first_loss_s": first_loss_s,
        "losses": losses,
        "model_flops": flops,
        "allocator": allocator_in_use(),
        **memory.report(),
    }


def _trained(args, model, recompute: bool):
    """The LoRA rank (every side trains the default adapter) and what gets weight gradients, for model_flops."""
    from model_flops import Shapes, trained_for

    from studio.config import LoraConfig

    shapes = Shapes.of(model.config)
    rank = LoraConfig().rank if args.method == "lora" else 0
    return shapes, rank, trained_for(shapes, args.method, args.freeze_layers, inputs_need_grad=recompute)


def _baseline_flops(args, model, examples: list[Encoded]) -> float:
    """Padded batches of 2 in order, recomputed forward, logits at every position."""
    from model_flops import training_flops

    widths = [max(len(e.input_ids) for e in examples[i : i + BATCH]) for i in range(0, len(examples), BATCH)]
    rows = [width for width in widths for _ in range(BATCH)]
    shapes, rank, trained = _trained(args, model, recompute=True)
    return training_flops(shapes, rows, sum(rows), rank, recompute=True, trained=trained)


def _ours_flops(args, trainer, model, examples: list[Encoded], full_logits: bool) -> float:
    """The micro-batches the trainer ran, packed or padded, recomputed or not."""
    from model_flops import training_flops

    from studio.training.batches import predicted_tokens

    rows = []
    for step in range(trainer.schedule.total_steps):
        step_examples = [examples[i] for batch in trainer.schedule.micro_batches(step) for i in batch]
        for group in (g for lane in trainer.token_losses.lane_plans(step_examples) for g in lane):
            widths = [len(e.input_ids) for e in group]
            rows += widths if trainer.token_losses.packing else [max(widths)] * len(group)
    head_rows = sum(rows) if full_logits else predicted_tokens(examples)
    recompute = trainer.config.use_gradient_checkpointing(trainer.plan.device)
    shapes, rank, trained = _trained(args, model, recompute)
    return training_flops(shapes, rows, head_rows, rank, recompute, trained)


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
            output_dir=out,
            per_device_train_batch_size=BATCH,
            gradient_accumulation_steps=ACCUMULATION,
            max_steps=args.steps,
            learning_rate=LR,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            # already on in the model, reentrant as LLaMA-Factory has it (see _setup_baseline)
            gradient_checkpointing=False,
            use_cpu=args.device == "cpu",
            seed=SEED,
            disable_tqdm=True,
            remove_unused_columns=False,
            dataloader_num_workers=0,
            bf16=plan.weight_dtype == torch.bfloat16,
            lr_scheduler_type="cosine",
        )
        trainer = InOrder(
            model=model, args=training_args, train_dataset=dataset, callbacks=[Losses()], data_collator=pad_to_longest
        )
        started = time.perf_counter()
        trainer.train()
        finished = time.perf_counter()
    flops = _baseline_flops(args, model, examples)
    return _result(
        examples, finished - started, first_loss[0] if first_loss else None, losses, memory, log_times, finished, flops
    )


def pad_to_longest(features: list[dict]) -> dict:
    """What DataCollatorForSeq2Seq(padding='longest', label_pad_token_id=-100) produces, right padding."""
    width = max(len(f["input_ids"]) for f in features)
    return {
        "input_ids": torch.tensor([f["input_ids"] + [0] * (width - len(f["input_ids"])) for f in features]),
        "attention_mask": torch.tensor(
            [[1] * len(f["input_ids"]) + [0] * (width - len(f["input_ids"])) for f in features]
        ),
        "labels": torch.tensor([f["labels"] + [IGNORE_INDEX] * (width - len(f["labels"])) for f in features]),
    }


def run_ours(args, process_started: float, name: str) -> dict:
    from studio.config import LoraConfig
    from studio.training.loop import Trainer

    variant = VARIANTS[name]
    training = ours_training(variant, args.steps, args.precision)
    memory = PeakMemory(args.device)
    model, examples, plan = _setup_ours(args, training, variant)
    first_loss, losses, log_times = [], [], []

    def emit(event):
        if event.type == "step":
            losses.append(event.loss)
            first_loss.append(time.time() - process_started)
            log_times.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(
            model,
            train=examples,
            val=[],
            config=training,
            lora=LoraConfig(),
            plan=plan,
            checkpoints_dir=Path(out),
            emit=emit,
            abort=threading.Event(),
            levers=variant.levers,
        )
        started = time.perf_counter()
        trainer.run()
        finished = time.perf_counter()
    flops = _ours_flops(args, trainer, model, examples, full_logits=not variant.levers.label_rows_only)
    return _result(
        examples, finished - started, first_loss[0] if first_loss else None, losses, memory, log_times, finished, flops
    )
