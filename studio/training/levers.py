"""The speed techniques of the studio's training step that are not user settings, one switch each.

Every field defaults to what the studio does, and the studio always trains with the defaults:
each technique computes the same losses and gradients as the plain way (up to float rounding),
so there is nothing for a user to choose. They exist so that `bench/throughput_sides.py` can
turn one off and measure what it is worth, and so that a test can check the plain way still
runs. Techniques a user may want to choose are config fields instead (`training.packing`,
`training.micro_batch_lanes`, `training.gradient_checkpointing`, `training.compile`,
`training.liger_kernels`, `quantization.cache_dequantized`).

The model builder (`studio.training.trainable.load_trainable_model`) and the trainer
(`studio.training.loop.Trainer`) take a `Levers` and hand each field to the code it switches.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Levers:
    fused_cross_entropy: bool = True
    """Cross-entropy that forms the logits of a chunk of label rows and their gradient in one pass,
    so the vocabulary-sized logits never exist whole (`label_loss.LabelCrossEntropy`). Off: the
    output layer's logits of the label rows, then torch's cross-entropy. Honoured by `TokenLosses`."""

    label_rows_only: bool = True
    """Only the hidden states of positions that carry a label reach the output layer. Off: logits and
    cross-entropy at every position, as a plain causal-LM head does (then always torch's
    cross-entropy, whatever `fused_cross_entropy` says); the unlabelled losses are dropped after.
    Honoured by `TokenLosses`."""

    cross_entropy_chunk: int | None = None
    """Logits per chunk of the fused cross-entropy; None picks by device and allocator
    (`label_loss.chunk_elements`: larger on CPU under tcmalloc). Honoured by `TokenLosses`."""

    length_grouping: bool = True
    """Padded micro-batches (`training.packing: false`) are made of examples of similar lengths, so
    little of each is padding. Off: consecutive examples in the step's order. Honoured by
    `TokenLosses.lane_plans`."""

    balanced_lanes: bool = True
    """Packed steps on CPU lanes are dealt into one share of equal work per lane
    (`packing.plan_lanes`). Off: the step is cut into consecutive groups and whichever lane is free
    takes the next. Honoured by `TokenLosses.lane_plans`."""

    grouped_kv_attention: bool = True
    """Packed attention's SDPA path attends grouped-query heads to their shared key/value heads
    without copying them (copies autograd would keep). Off: key/value heads repeated per query
    head first. Honoured by `varlen_attention.register`."""

    lean_mlp: bool = True
    """On CPU, gated SiLU MLPs keep 2 of their 4 activations for the backward pass and recompute
    silu (`lean_mlp.use_lean_mlps`). Honoured by `load_trainable_model`."""

    uncast_lora_inputs: bool = True
    """Under autocast, peft's LoRA layers leave their inputs to autocast instead of casting each one
    to fp32 (a copy per LoRA layer kept for the backward pass; `trainable.keep_inputs_uncast`).
    Honoured by `load_trainable_model`."""


DEFAULT_LEVERS = Levers()
