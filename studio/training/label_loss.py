"""Cross-entropy at the label positions only, without materialising the vocabulary logits.

The output layer is frozen under LoRA, so the only gradient it has to pass back is the one
for the hidden states: (softmax - onehot) @ W. `LabelCrossEntropy` computes the logits of a
chunk of rows, turns them into losses and that gradient at once, and keeps only the
gradient (rows x hidden) for the backward pass. Peak memory is one chunk of logits instead
of (tokens x vocabulary) logits plus their softmax and gradient, and positions that carry
no label (prompts, padding) never reach the output layer at all.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from transformers import PreTrainedModel

# Logits per chunk. CUDA: large enough for efficient GEMMs. CPU: each chunk reads the whole
# output layer twice, so bigger chunks are faster (+8% tokens/s for 4x on the embedded model),
# but under glibc's malloc a chunk over its 32 MiB mmap ceiling is page-faulted in afresh
# every time; tcmalloc recycles big blocks, so with it CPU chunks are 4x larger.
CHUNK_ELEMENTS = {"cpu": 2**22, "cuda": 2**26}
CPU_CHUNK_ELEMENTS_WITH_TCMALLOC = 2**24
MIN_CHUNK_ROWS = 64


class LabelCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_rows: int
    ) -> torch.Tensor:
        losses = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        keep_grad = ctx.needs_input_grad[0]
        grad = torch.empty_like(hidden) if keep_grad else None
        for start in range(0, hidden.shape[0], chunk_rows):
            rows = slice(start, start + chunk_rows)
            logits = (hidden[rows] @ weight.t()).float()
            log_norm = torch.logsumexp(logits, dim=-1)
            chunk_targets = targets[rows]
            losses[rows] = log_norm - logits.gather(1, chunk_targets[:, None]).squeeze(1)
            if grad is not None:
                probabilities = logits.sub_(log_norm[:, None]).exp_()
                probabilities[torch.arange(len(chunk_targets), device=hidden.device), chunk_targets] -= 1
                grad[rows] = probabilities.to(weight.dtype) @ weight
        ctx.save_for_backward(grad)
        return losses

    @staticmethod
    def backward(ctx: Any, grad_losses: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        (grad,) = ctx.saved_tensors
        return grad * grad_losses[:, None].to(grad.dtype), None, None, None


def fused_head_supported(model: PreTrainedModel) -> bool:
    """A plain, frozen, bias-free linear output layer with no logit scaling or soft-capping."""
    head = model.get_output_embeddings()
    config = model.config
    plain = type(head) is torch.nn.Linear and head.bias is None and not head.weight.requires_grad
    scaled = any(
        getattr(config, name, None) not in (None, 1.0)
        for name in ("final_logit_softcapping", "logit_scale", "logits_scaling")
    )
    return plain and not scaled


def label_losses(hidden: torch.Tensor, head: torch.nn.Module, targets: torch.Tensor, chunk: int | None) -> torch.Tensor:
    """Per-token losses of the rows of `hidden` (rows x dim) against `targets` (rows,): fused in
    chunks of about `chunk` logits, or torch's cross-entropy over whole logits when `chunk` is None."""
    if chunk:
        weight = head.weight
        assert isinstance(weight, torch.Tensor)  # a Linear's (fused_head_supported), not a submodule
        rows = max(MIN_CHUNK_ROWS, chunk // weight.shape[0])
        return LabelCrossEntropy.apply(hidden, weight, targets, rows)
    return F.cross_entropy(head(hidden).float(), targets, reduction="none")


@functools.cache
def chunk_elements(device: str) -> int:
    from studio.allocator import allocator_in_use

    if device == "cpu" and "tcmalloc" in allocator_in_use():
        return CPU_CHUNK_ELEMENTS_WITH_TCMALLOC
    return CHUNK_ELEMENTS.get(device, CHUNK_ELEMENTS["cpu"])
