"""The optimisation schedule and the run's bookkeeping."""

from __future__ import annotations

from typing import Literal


from studio.config.base import AutoOnOff, Section, field


# Compiling the layers costs about a minute and then trains 2-2.5x faster on a GPU: with eager
# steps at ~6k tokens/s (Qwen1.5-1.8B shape, H100) it pays off after about 1M tokens.
COMPILE_MIN_TOKENS = 1_000_000


class TrainingConfig(Section):
    learning_rate: float = field(1e-4, "Peak learning rate of AdamW.", zh="学习率", gt=0, le=1)
    num_epochs: float = field(3.0, "Passes over the training split (ignored when max_steps is set).", zh="训练轮数", gt=0)
    max_steps: int | None = field(None, "Stop after this many optimizer steps; empty to use num_epochs.", zh="最大步数", ge=1)
    batch_size: int = field(2, "Examples per micro-batch; batch size x gradient accumulation examples make one optimizer step.", zh="批大小", ge=1)
    gradient_accumulation_steps: int = field(2, "Micro-batches per optimizer step.", zh="梯度累积", ge=1)
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = field(
        "cosine", "Learning-rate schedule after warm-up.", zh="学习率调度器"
    )
    warmup_steps: int = field(0, "Linear warm-up steps.", zh="预热步数", ge=0, advanced=True)
    weight_decay: float = field(0.0, "AdamW weight decay.", zh="权重衰减", ge=0, advanced=True)
    max_grad_norm: float = field(1.0, "Clip the gradient norm to this value (0 disables).", zh="最大梯度范数", ge=0, advanced=True)
    precision: Literal["auto", "bf16", "fp16", "fp32"] = field(
        "auto", "Training precision; 'auto' is bf16 on GPUs and CPUs that compute it natively (AVX512-BF16, AMX), else fp16 on GPUs and fp32 on CPUs.", zh="训练精度", advanced=True
    )
    logging_steps: int = field(5, "Report the training loss every N optimizer steps.", zh="日志间隔", ge=1, advanced=True)
    eval_steps: int = field(20, "Evaluate on the validation split every N optimizer steps (and at the end).", zh="评估间隔", ge=1, advanced=True)
    save_steps: int = field(100, "Save a resumable checkpoint every N optimizer steps.", zh="保存间隔", ge=1, advanced=True)
    early_stopping_patience: int | None = field(
        3, "Stop after this many evaluations without a better eval_loss; empty to disable.", zh="早停耐心", ge=1, advanced=True
    )
    load_best_at_end: bool = field(
        True, "Save the adapter from the evaluation with the lowest eval_loss.", zh="结束时加载最优", advanced=True
    )
    gradient_checkpointing: AutoOnOff = field(
        "auto",
        "Recompute activations in the backward pass: less memory, ~30% slower. 'auto' is on for CUDA, off on CPU (memory is plentiful there).",
        zh="梯度检查点",
        advanced=True,
    )
    packing: bool = field(
        True,
        "Padding-free: lay the examples of each optimizer step end to end (attention stays inside each example), "
        "so no compute goes to padding. The gradient is the same as with padded batches.",
        zh="无填充打包",
        advanced=True,
    )
    micro_batch_tokens: int | None = field(
        None,
        "With packing, tokens per forward pass (an optimizer step still has batch size x accumulation examples); "
        "empty = 512 on CPU (small working sets are fastest there), 4096 on CUDA. Larger uses more activation memory.",
        zh="每次前向的词元数",
        ge=16,
        advanced=True,
    )
    micro_batch_lanes: int | None = field(
        None,
        "CPU only: micro-batches of a step trained at the same time, each on its share of the cores "
        "(empty = 2 when the CPU has 2 or more cores). Faster on small CPUs; each lane holds one micro-batch of activations.",
        zh="并行微批次数（CPU）",
        ge=1,
        le=64,
        advanced=True,
    )
    liger_kernels: bool = field(
        True,
        "On CUDA, use Liger's Triton kernels for RMSNorm, SwiGLU and RoPE when the liger-kernel package is installed.",
        zh="Liger 内核（CUDA）",
        advanced=True,
    )
    compile: AutoOnOff = field(
        "auto",
        "Compile each decoder layer with torch.compile: fewer, fused kernels (on a GPU, LoRA steps of small models are "
        "bound by kernel launches), after a one-off compilation of about a minute. 'auto' is on with CUDA for runs of 1M tokens or more, "
        "off on CPU. Replaces the Liger kernels.",
        zh="编译解码层（torch.compile）",
        advanced=True,
    )
    seed: int = field(42, "Seed for the data split, shuffling and adapter initialisation.", zh="随机种子", advanced=True)
    output_dir: str = field("runs", "Folder that holds one sub-folder per run.", zh="输出目录", advanced=True)
    resume_from_checkpoint: str | None = field(
        None, "Checkpoint folder to continue from (optimizer, scheduler and step count included).", zh="从检查点恢复", advanced=True
    )


    def tokens_per_forward(self, device: str) -> int:
        return self.micro_batch_tokens or (4096 if device == "cuda" else 512)

    def use_compile(self, device: str, planned_tokens: int | None = None) -> bool:
        """'auto' compiles on CUDA unless the run is too short to repay the compilation."""
        if self.compile != "auto":
            return self.compile == "on"
        return device == "cuda" and (planned_tokens is None or planned_tokens >= COMPILE_MIN_TOKENS)

    def use_gradient_checkpointing(self, device: str) -> bool:
        return self.gradient_checkpointing == "on" or (self.gradient_checkpointing == "auto" and device == "cuda")

