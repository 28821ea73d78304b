"""The optimisation schedule and the run's bookkeeping."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import field_validator, model_validator

from studio.config.base import AutoOnOff, FieldProblem, Section, field

# Compiling the layers costs about a minute and then trains 2-2.5x faster on a GPU: with eager
# steps at ~6k tokens/s (Qwen1.5-1.8B shape, H100) it pays off after about 1M tokens.
COMPILE_MIN_TOKENS = 1_000_000


STAGES = ("sft", "dpo", "kto", "pt", "rm", "ppo", "grpo")
# stages whose validation split gives reward accuracy and margin (best_metric may go by them)
PREFERENCE_STAGES = ("dpo", "kto", "rm")
# stages that learn from answers the model samples: evaluated by the reward of its answers to the validation prompts
RL_STAGES = ("ppo", "grpo")
# auto | cpu | cuda | cuda:0,1 | N (processes: GPUs on a GPU machine, CPU processes on a CPU-only one)
DEVICES = re.compile(r"^(auto|cpu|cuda|cuda:\d+(,\d+)*|[1-9]\d*)$")
Precision = Literal["auto", "bf16", "fp16", "fp32"]
# every schedule transformers' get_scheduler offers (transformers.SchedulerType)
LrScheduler = Literal[
    "cosine",
    "linear",
    "constant",
    "constant_with_warmup",
    "cosine_with_restarts",
    "polynomial",
    "inverse_sqrt",
    "cosine_with_min_lr",
    "cosine_warmup_with_min_lr",
    "warmup_stable_decay",
    "reduce_lr_on_plateau",
    "greedy",
]
# schedules stepped by evaluations (the tracked metric), not by optimizer steps
METRIC_SCHEDULERS = ("reduce_lr_on_plateau", "greedy")


class TrainingConfig(Section):
    stage: Literal["sft", "dpo", "kto", "pt", "rm", "ppo", "grpo"] = field(
        "sft",
        "What to train: sft (supervised fine-tuning on conversations), dpo (preference pairs: chosen/rejected "
        "answers), kto (answers marked desirable or not), pt (continued pretraining on plain text), rm (a reward "
        "model on preference pairs), ppo (RLHF: answers sampled and scored by a finished rm run) or grpo "
        "(answers sampled in groups and scored by rules, e.g. a correct final number).",
    )
    devices: str = field(
        "auto",
        "Devices of this machine to train on: auto (the first GPU, else the CPU), cpu, cuda:0,1 (those GPUs, one "
        "process each, data parallel on torchrun), or a count N (the first N GPUs; on a CPU-only machine N processes "
        "sharing the cores). A run locks each GPU it uses; runs on other GPUs train at the same time.",
    )
    learning_rate: float = field(1e-4, "Peak learning rate of AdamW.", gt=0, le=1)
    num_epochs: float = field(
        3.0,
        "Passes over the training split (ignored when max_steps is set).",
        gt=0,
    )
    max_steps: int | None = field(
        None,
        "Stop after this many optimizer steps; empty to use num_epochs.",
        ge=1,
    )
    batch_size: int = field(
        2,
        "Examples per micro-batch; batch size x gradient accumulation examples make one optimizer step.",
        ge=1,
    )
    gradient_accumulation_steps: int = field(2, "Micro-batches per optimizer step.", ge=1)
    auto_batch_size: bool = field(
        False,
        "Before training, pick the largest micro-batch that fits the device's free memory (GPU memory, or RAM on a "
        "CPU), from the memory estimate with the data's own lengths: tokens per forward pass with packing, else the "
        "batch size, with gradient accumulation adjusted so a step keeps its examples. The choice is in the run's "
        "log. Single-process runs only.",
        advanced=True,
    )
    lr_scheduler: LrScheduler = field(
        "cosine",
        "Learning-rate schedule after warm-up (transformers' schedulers): cosine, linear, cosine_with_restarts "
        "(lr_num_cycles hard restarts), polynomial (lr_power, down to lr_min_ratio), constant, constant_with_warmup, "
        "inverse_sqrt (lr_timescale), cosine_with_min_lr and cosine_warmup_with_min_lr (down to lr_min_ratio), "
        "warmup_stable_decay (lr_decay_steps at the end), reduce_lr_on_plateau and greedy (lowered, or for greedy "
        "also raised up to learning_rate, by lr_factor after lr_patience evaluations without a better best_metric: "
        "they need a validation split). constant, reduce_lr_on_plateau and greedy have no warm-up.",
    )
    lr_num_cycles: float | None = field(
        None,
        "cosine_with_restarts: number of cosine cycles, each restarting at the peak (empty: 1); cosine_with_min_lr, "
        "cosine_warmup_with_min_lr, warmup_stable_decay: waves of the cosine (empty: 0.5, one half-wave down).",
        gt=0,
        advanced=True,
    )
    lr_min_ratio: float = field(
        0.0,
        "The lowest learning rate as a share of learning_rate, for polynomial, cosine_with_min_lr, "
        "cosine_warmup_with_min_lr, warmup_stable_decay, reduce_lr_on_plateau and greedy.",
        ge=0,
        lt=1,
        advanced=True,
    )
    lr_power: float = field(1.0, "polynomial: the power of the decay (1 is linear).", gt=0, advanced=True)
    lr_decay_steps: int | None = field(
        None,
        "warmup_stable_decay: steps of the final decay, at most the steps after warm-up (empty: a tenth of the run).",
        ge=1,
        advanced=True,
    )
    lr_warmup_type: Literal["linear", "cosine", "1-sqrt"] = field(
        "linear", "warmup_stable_decay: shape of the warm-up.", advanced=True
    )
    lr_decay_type: Literal["linear", "cosine", "1-sqrt"] = field(
        "cosine", "warmup_stable_decay: shape of the decay.", advanced=True
    )
    lr_timescale: int | None = field(
        None,
        "inverse_sqrt: the time scale of the decay in steps (empty: warmup_steps, or 10000 without warm-up).",
        ge=1,
        advanced=True,
    )
    lr_factor: float | None = field(
        None,
        "reduce_lr_on_plateau and greedy: what the learning rate is multiplied by on a plateau (greedy divides by it "
        "after improvements); empty: 0.1 and 0.95.",
        gt=0,
        lt=1,
        advanced=True,
    )
    lr_patience: int | None = field(
        None,
        "reduce_lr_on_plateau and greedy: evaluations without a better best_metric before the learning rate changes "
        "(empty: 10).",
        ge=0,
        advanced=True,
    )
    warmup_steps: int = field(0, "Linear warm-up steps.", ge=0, advanced=True)
    weight_decay: float = field(0.0, "AdamW weight decay.", ge=0, advanced=True)
    max_grad_norm: float = field(
        1.0,
        "Clip the gradient norm to this value (0 disables).",
        ge=0,
        advanced=True,
    )
    neftune_alpha: float | None = field(
        None,
        "NEFTune: uniform noise in ±alpha/sqrt(L·d) added to the input embeddings of training passes (never to "
        "evaluation or generation), as LLaMA-Factory's neftune_noise_alpha; 5 is typical, empty disables. d is the "
        "embedding width and L the length of each example, also inside a packed row (Hugging Face takes the padded "
        "row's length, which for a packed row of many examples would make the noise much weaker).",
        gt=0,
        advanced=True,
    )
    precision: Precision = field(
        "auto",
        "Training precision; 'auto' is bf16 on GPUs and CPUs that compute it natively (AVX512-BF16, AMX), else fp16 on "
        "GPUs and fp32 on CPUs.",
        advanced=True,
    )
    pure_bf16: bool = field(
        False,
        "With bf16 precision, keep the trained weights and optimizer moments in bf16 too (no fp32 master copy): "
        "about half the memory of full fine-tuning, at some cost in precision of small updates.",
        advanced=True,
    )
    logging_steps: int = field(
        5,
        "Report the training loss every N optimizer steps.",
        ge=1,
        advanced=True,
    )
    eval_steps: int = field(
        20,
        "Evaluate on the validation split every N optimizer steps (and at the end).",
        ge=1,
        advanced=True,
    )
    save_steps: int = field(
        100,
        "Save a resumable checkpoint every N optimizer steps.",
        ge=1,
        advanced=True,
    )
    early_stopping_patience: int | None = field(
        3,
        "Stop after this many evaluations without a better best_metric (eval_loss by default); empty to disable.",
        ge=1,
        advanced=True,
    )
    load_best_at_end: bool = field(
        True,
        "Save the adapter from the best evaluation (by best_metric).",
        advanced=True,
    )
    best_metric: Literal["eval_loss", "reward_accuracy", "reward_margin"] = field(
        "eval_loss",
        "What early stopping and the best checkpoint go by: eval_loss (lower is better), or for dpo/kto/rm "
        "reward_accuracy or reward_margin on the validation split (higher is better). ppo and grpo always go by the "
        "mean reward of the model's answers to the validation prompts.",
        advanced=True,
    )
    gradient_checkpointing: AutoOnOff = field(
        "auto",
        "Recompute activations in the backward pass: less memory, ~30% slower. 'auto' is on for CUDA, off on CPU "
        "(memory is plentiful there).",
        advanced=True,
    )
    packing: bool = field(
        True,
        "Padding-free: lay the examples of each optimizer step end to end (attention stays inside each example), "
        "so no compute goes to padding. The gradient is the same as with padded batches.",
        advanced=True,
    )
    micro_batch_tokens: int | None = field(
        None,
        "With packing, tokens per forward pass (an optimizer step still has batch size x accumulation examples); "
        "empty = 512 on CPU (small working sets are fastest there), 4096 on CUDA. Larger uses more activation memory.",
        ge=16,
        advanced=True,
    )
    micro_batch_lanes: int | None = field(
        None,
        "CPU only: micro-batches of a step trained at the same time, each on its share of the cores "
        "(empty = 2 when the CPU has 2 or more cores; 1 for finetuning.method full, where each lane would hold a "
        "gradient of every weight). Faster on small CPUs; each lane holds one micro-batch of activations.",
        ge=1,
        le=64,
        advanced=True,
    )
    liger_kernels: bool = field(
        True,
        "On CUDA, use Liger's Triton kernels for RMSNorm, SwiGLU and RoPE when the liger-kernel package is installed.",
        advanced=True,
    )
    compile: AutoOnOff = field(
        "auto",
        "Compile each decoder layer with torch.compile: fewer, fused kernels (on a GPU, LoRA steps of small models are "
        "bound by kernel launches), after a one-off compilation of about a minute. 'auto' is on with CUDA for runs of "
        "1M tokens or more, "
        "off on CPU. Replaces the Liger kernels.",
        advanced=True,
    )
    seed: int = field(
        42,
        "Seed for the data split, shuffling and adapter initialisation.",
        advanced=True,
    )
    output_dir: str = field(
        "runs",
        "Folder that holds one sub-folder per run.",
        advanced=True,
    )
    resume_from_checkpoint: str | None = field(
        None,
        "Checkpoint folder to continue from (optimizer, scheduler and step count included).",
        advanced=True,
    )

    @field_validator("devices", mode="before")
    @classmethod
    def _known_devices(cls, value: object) -> str:
        # a count arrives from YAML or a command line as a number
        value = str(value).strip().lower().replace(" ", "")
        if not DEVICES.match(value):
            raise FieldProblem("config.unknown_devices")
        return value

    @model_validator(mode="after")
    def _metric_fits_stage(self) -> TrainingConfig:
        if self.best_metric != "eval_loss" and self.stage not in PREFERENCE_STAGES:
            raise FieldProblem("config.metric_needs_preference_stage", metric=self.best_metric, stage=self.stage)
        return self

    @property
    def is_preference(self) -> bool:
        return self.stage in PREFERENCE_STAGES

    @property
    def tracked_metric(self) -> str:
        """What early stopping and the best weights go by (best_metric, or for ppo and grpo the mean reward)."""
        return "reward_mean" if self.stage in RL_STAGES else self.best_metric

    def tokens_per_forward(self, device: str) -> int:
        return self.micro_batch_tokens or (4096 if device == "cuda" else 512)

    def use_compile(self, device: str, planned_tokens: int | None = None) -> bool:
        """'auto' compiles on CUDA unless the run is too short to repay the compilation."""
        if self.compile != "auto":
            return self.compile == "on"
        return device == "cuda" and (planned_tokens is None or planned_tokens >= COMPILE_MIN_TOKENS)

    def use_gradient_checkpointing(self, device: str) -> bool:
        return self.gradient_checkpointing == "on" or (self.gradient_checkpointing == "auto" and device == "cuda")
