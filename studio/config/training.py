"""The optimisation schedule and the run's bookkeeping."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import field_validator, model_validator

from studio.config.base import AutoOnOff, FieldProblem, Section, field

# Compiling the layers costs about a minute and then trains 2-2.5x faster on a GPU: with eager
# steps at ~6k tokens/s (Qwen1.5-1.8B shape, H100) it pays off after about 1M tokens.
COMPILE_MIN_TOKENS = 1_000_000


# What each stage trains on; reward modelling and PPO are not offered (DPO reaches the same goal with one model).
STAGES = ("sft", "dpo", "kto", "pt")
PREFERENCE_STAGES = ("dpo", "kto")
# auto | cpu | cuda | cuda:0,1 | N (processes: GPUs on a GPU machine, CPU processes on a CPU-only one)
DEVICES = re.compile(r"^(auto|cpu|cuda|cuda:\d+(,\d+)*|[1-9]\d*)$")


class TrainingConfig(Section):
    stage: Literal["sft", "dpo", "kto", "pt"] = field(
        "sft",
        "What to train: sft (supervised fine-tuning on conversations), dpo (preference pairs: chosen/rejected "
        "answers), "
        "kto (answers marked desirable or not) or pt (continued pretraining on plain text). Reward modelling and PPO "
        "are "
        "not offered: DPO reaches the same goal with one model and no reward model.",
        zh="训练阶段",
        zh_help="训练什么：sft（在对话上做监督微调）、dpo（偏好对：选中/拒绝的回答）、kto（标注为好或不好的回答）或 "
        "pt（在纯文本上继续预训练）。"
        "不提供奖励模型训练与 PPO：DPO 只用一个模型、无需奖励模型即可达到同样的目的。",
    )
    devices: str = field(
        "auto",
        "Devices of this machine to train on: auto (the first GPU, else the CPU), cpu, cuda:0,1 (those GPUs, one "
        "process each, data parallel on torchrun), or a count N (the first N GPUs; on a CPU-only machine N processes "
        "sharing the cores). A run locks each GPU it uses; runs on other GPUs train at the same time.",
        zh="训练设备",
        zh_help="本机用于训练的设备：auto（第一块 GPU，没有则用 CPU）、cpu、cuda:0,1（这些 GPU，每块一个进程，经 "
        "torchrun "
        "数据并行），或数量 N（前 N 块 GPU；仅有 CPU 时为分享 CPU 核心的 N 个进程）。训练会锁定所用的每块 GPU；"
        "使用其他 GPU 的训练可同时进行。",
    )
    learning_rate: float = field(
        1e-4, "Peak learning rate of AdamW.", zh="学习率", zh_help="AdamW 的峰值学习率。", gt=0, le=1
    )
    num_epochs: float = field(
        3.0,
        "Passes over the training split (ignored when max_steps is set).",
        zh="训练轮数",
        zh_help="遍历训练集的轮数（设置了最大步数时忽略）。",
        gt=0,
    )
    max_steps: int | None = field(
        None,
        "Stop after this many optimizer steps; empty to use num_epochs.",
        zh="最大步数",
        zh_help="训练这么多个优化步后停止；留空则按训练轮数。",
        ge=1,
    )
    batch_size: int = field(
        2,
        "Examples per micro-batch; batch size x gradient accumulation examples make one optimizer step.",
        zh="批大小",
        zh_help="每个微批次的样本数；批大小 × 梯度累积 个样本构成一个优化步。",
        ge=1,
    )
    gradient_accumulation_steps: int = field(
        2, "Micro-batches per optimizer step.", zh="梯度累积", zh_help="每个优化步包含的微批次数。", ge=1
    )
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = field(
        "cosine", "Learning-rate schedule after warm-up.", zh="学习率调度器", zh_help="预热之后的学习率调度。"
    )
    warmup_steps: int = field(
        0, "Linear warm-up steps.", zh="预热步数", zh_help="线性预热的步数。", ge=0, advanced=True
    )
    weight_decay: float = field(
        0.0, "AdamW weight decay.", zh="权重衰减", zh_help="AdamW 权重衰减。", ge=0, advanced=True
    )
    max_grad_norm: float = field(
        1.0,
        "Clip the gradient norm to this value (0 disables).",
        zh="最大梯度范数",
        zh_help="把梯度范数裁剪到该值（0 表示不裁剪）。",
        ge=0,
        advanced=True,
    )
    precision: Literal["auto", "bf16", "fp16", "fp32"] = field(
        "auto",
        "Training precision; 'auto' is bf16 on GPUs and CPUs that compute it natively (AVX512-BF16, AMX), else fp16 on "
        "GPUs and fp32 on CPUs.",
        zh="训练精度",
        zh_help="训练精度；'auto' 在 GPU 和原生支持 bf16 的 CPU（AVX512-BF16、AMX）上为 bf16，否则 GPU 上为 fp16、CPU "
        "上为 fp32。",
        advanced=True,
    )
    logging_steps: int = field(
        5,
        "Report the training loss every N optimizer steps.",
        zh="日志间隔",
        zh_help="每 N 个优化步报告一次训练损失。",
        ge=1,
        advanced=True,
    )
    eval_steps: int = field(
        20,
        "Evaluate on the validation split every N optimizer steps (and at the end).",
        zh="评估间隔",
        zh_help="每 N 个优化步在验证集上评估一次（结束时也评估）。",
        ge=1,
        advanced=True,
    )
    save_steps: int = field(
        100,
        "Save a resumable checkpoint every N optimizer steps.",
        zh="保存间隔",
        zh_help="每 N 个优化步保存一个可继续训练的检查点。",
        ge=1,
        advanced=True,
    )
    early_stopping_patience: int | None = field(
        3,
        "Stop after this many evaluations without a better best_metric (eval_loss by default); empty to disable.",
        zh="早停耐心",
        zh_help="连续这么多次评估“最优指标”（默认 eval_loss）没有改善就停止；留空则不启用。",
        ge=1,
        advanced=True,
    )
    load_best_at_end: bool = field(
        True,
        "Save the adapter from the best evaluation (by best_metric).",
        zh="结束时加载最优",
        zh_help="保存最优那次评估（按“最优指标”）时的适配器。",
        advanced=True,
    )
    best_metric: Literal["eval_loss", "reward_accuracy", "reward_margin"] = field(
        "eval_loss",
        "What early stopping and the best checkpoint go by: eval_loss (lower is better; every stage), or for dpo/kto "
        "reward_accuracy or reward_margin on the validation split (higher is better).",
        zh="最优指标",
        zh_help="早停与最优检查点依据的指标：eval_loss（越低越好，所有阶段可用），或 dpo/kto 阶段在验证集上的 "
        "reward_accuracy、reward_margin（越高越好）。",
        advanced=True,
    )
    gradient_checkpointing: AutoOnOff = field(
        "auto",
        "Recompute activations in the backward pass: less memory, ~30% slower. 'auto' is on for CUDA, off on CPU "
        "(memory is plentiful there).",
        zh="梯度检查点",
        zh_help="反向传播时重新计算激活：更省内存，约慢 30%。'auto' 在 CUDA 上开启，在 CPU 上关闭（CPU 内存充足）。",
        advanced=True,
    )
    packing: bool = field(
        True,
        "Padding-free: lay the examples of each optimizer step end to end (attention stays inside each example), "
        "so no compute goes to padding. The gradient is the same as with padded batches.",
        zh="无填充打包",
        zh_help="无填充打包：把一个优化步的样本首尾相接（注意力只在各自样本内），不在填充上浪费计算。梯度与填充批次相同。",
        advanced=True,
    )
    micro_batch_tokens: int | None = field(
        None,
        "With packing, tokens per forward pass (an optimizer step still has batch size x accumulation examples); "
        "empty = 512 on CPU (small working sets are fastest there), 4096 on CUDA. Larger uses more activation memory.",
        zh="每次前向的词元数",
        zh_help="打包时每次前向的 token 数（一个优化步仍为 批大小 × 梯度累积 个样本）；留空时 CPU 为 512（小工作集在 "
        "CPU 上最快），CUDA 为 4096。越大占用的激活内存越多。",
        ge=16,
        advanced=True,
    )
    micro_batch_lanes: int | None = field(
        None,
        "CPU only: micro-batches of a step trained at the same time, each on its share of the cores "
        "(empty = 2 when the CPU has 2 or more cores). Faster on small CPUs; each lane holds one micro-batch of "
        "activations.",
        zh="并行微批次数（CPU）",
        zh_help="仅 CPU：一个优化步中同时训练的微批次数，各用一部分核心（留空时，2 核及以上的 CPU 为 2）。在小型 CPU "
        "上更快；每路各占一个微批次的激活内存。",
        ge=1,
        le=64,
        advanced=True,
    )
    liger_kernels: bool = field(
        True,
        "On CUDA, use Liger's Triton kernels for RMSNorm, SwiGLU and RoPE when the liger-kernel package is installed.",
        zh="Liger 内核（CUDA）",
        zh_help="在 CUDA 上，如已安装 liger-kernel，则用 Liger 的 Triton 内核实现 RMSNorm、SwiGLU 和 RoPE。",
        advanced=True,
    )
    compile: AutoOnOff = field(
        "auto",
        "Compile each decoder layer with torch.compile: fewer, fused kernels (on a GPU, LoRA steps of small models are "
        "bound by kernel launches), after a one-off compilation of about a minute. 'auto' is on with CUDA for runs of "
        "1M tokens or more, "
        "off on CPU. Replaces the Liger kernels.",
        zh="编译解码层（torch.compile）",
        zh_help="用 torch.compile 编译每个解码层：内核更少、可融合（在 GPU 上，小模型的 LoRA 训练受限于内核启动），需"
        "先花约一分钟编译。'auto' 在 CUDA 上且训练 token 数达到 "
        "100 万时开启，CPU 上关闭。开启后不再使用 Liger 内核。",
        advanced=True,
    )
    seed: int = field(
        42,
        "Seed for the data split, shuffling and adapter initialisation.",
        zh="随机种子",
        zh_help="数据划分、打乱与适配器初始化使用的随机种子。",
        advanced=True,
    )
    output_dir: str = field(
        "runs",
        "Folder that holds one sub-folder per run.",
        zh="输出目录",
        zh_help="存放各次训练子目录的目录。",
        advanced=True,
    )
    resume_from_checkpoint: str | None = field(
        None,
        "Checkpoint folder to continue from (optimizer, scheduler and step count included).",
        zh="从检查点恢复",
        zh_help="从这个检查点目录继续训练（包含优化器、调度器和步数）。",
        advanced=True,
    )

    @field_validator("devices", mode="before")
    @classmethod
    def _known_devices(cls, value) -> str:
        # a count arrives from YAML or a command line as a number
        value = str(value).strip().lower().replace(" ", "")
        if not DEVICES.match(value):
            raise FieldProblem(
                "use auto, cpu, cuda, cuda:0,1 (GPU numbers) or a process count such as 2",
                "请填写 auto、cpu、cuda、cuda:0,1（GPU 编号）或进程数（如 2）",
            )
        return value

    @model_validator(mode="after")
    def _metric_fits_stage(self) -> TrainingConfig:
        if self.best_metric != "eval_loss" and self.stage not in PREFERENCE_STAGES:
            raise FieldProblem(
                f"best_metric {self.best_metric} is measured in the dpo and kto stages only; use eval_loss for stage "
                f"{self.stage}",
                f"best_metric {self.best_metric} 只在 dpo 和 kto 阶段计算；{self.stage} 阶段请使用 eval_loss",
            )
        return self

    @property
    def is_preference(self) -> bool:
        return self.stage in PREFERENCE_STAGES

    def tokens_per_forward(self, device: str) -> int:
        return self.micro_batch_tokens or (4096 if device == "cuda" else 512)

    def use_compile(self, device: str, planned_tokens: int | None = None) -> bool:
        """'auto' compiles on CUDA unless the run is too short to repay the compilation."""
        if self.compile != "auto":
            return self.compile == "on"
        return device == "cuda" and (planned_tokens is None or planned_tokens >= COMPILE_MIN_TOKENS)

    def use_gradient_checkpointing(self, device: str) -> bool:
        return self.gradient_checkpointing == "on" or (self.gradient_checkpointing == "auto" and device == "cuda")
