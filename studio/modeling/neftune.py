"""NEFTune (Jain et al. 2023, "NEFTune: Noisy Embeddings Improve Instruction Finetuning"), training.neftune_alpha:
while training, uniform noise in [-a, a] with a = alpha / sqrt(L * d) is added to the input embeddings (d: their
width, L: the sequence length), as LLaMA-Factory's neftune_noise_alpha through Hugging Face's Trainer.

L is each example's own length. Hugging Face takes the row's width (padded to the longest example); here a packed
row holds many examples end to end, and its width would shrink the noise by the square root of their number. So
the hook reads the examples' bounds from the decoder call: `cu_seq_lens_q` for a packed row, the attention mask
for padded rows. The same examples draw noise of the same size packed or padded, and one unpadded example exactly
Hugging Face's. (A shared-prompt row, preference pairs or GRPO groups, counts a prompt with all its answers.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from torch.utils.hooks import RemovableHandle
    from transformers import PreTrainedModel


@dataclass
class NoiseHooks:
    handles: list[RemovableHandle] = field(default_factory=list)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def add_neftune(model: PreTrainedModel, alpha: float | None) -> NoiseHooks | None:
    """Hook the noise onto `model`'s input embeddings (after any resize: a new embedding has no hook), or nothing
    when `alpha` is None. Noise is added only in training mode with gradients on: never in evaluation, nor in the
    generation a run makes while it trains (watched prompts, GRPO and PPO samples), which runs without gradients.

    The hooks are plain closures: peft's copy of a fully trained embedding (modules_to_save) keeps a working one."""
    if alpha is None:
        return None
    lengths: dict[str, torch.Tensor | None] = {"last": None}

    def remember_lengths(module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        lengths["last"] = example_lengths(kwargs)

    def add_noise(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        length, lengths["last"] = lengths["last"], None
        if not (module.training and torch.is_grad_enabled()):
            return None
        return output + noise_like(output, alpha, length)

    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
    if getattr(model.config, "vision_config", None) is not None:
        # a vision-language model's language model is given embeddings: the ids and bounds go into the model above it
        decoder = model.base_model
    return NoiseHooks(
        [
            decoder.register_forward_pre_hook(remember_lengths, with_kwargs=True),
            model.get_input_embeddings().register_forward_hook(add_noise),
        ]
    )


def example_lengths(kwargs: dict[str, Any]) -> torch.Tensor | None:
    """The length of the example each position belongs to, shaped to broadcast over the embeddings: (1, T, 1) for
    a packed row, (B, 1, 1) for padded rows; None when the call does not say (then the row is one example)."""
    bounds = kwargs.get("cu_seq_lens_q")
    ids = kwargs.get("input_ids")
    if bounds is not None and ids is not None:
        sizes = (bounds[1:] - bounds[:-1]).long()
        # output_size: the row's length is known, so CUDA needs no sync to size the result
        return torch.repeat_interleave(sizes, sizes, output_size=ids.shape[-1]).view(1, -1, 1)
    mask = kwargs.get("attention_mask")
    if isinstance(mask, torch.Tensor) and mask.dim() == 2:
        return mask.sum(dim=-1).clamp(min=1).view(-1, 1, 1)
    return None


def noise_like(embeddings: torch.Tensor, alpha: float, lengths: torch.Tensor | None) -> torch.Tensor:
    """Uniform noise in ±alpha/sqrt(L·d) for (B, T, d) embeddings; L per position from `lengths`, else T."""
    batch, width, dim = embeddings.shape
    if lengths is None or lengths.shape[0] not in (1, batch) or lengths.shape[1] not in (1, width):
        lengths = torch.tensor(width, device=embeddings.device)
    bound = alpha / torch.sqrt(lengths.float() * dim)
    return torch.empty_like(embeddings).uniform_(-1, 1) * bound.to(embeddings.dtype)
