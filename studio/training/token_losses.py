"""The one forward pass the trainer makes: per-token losses of a list of examples.

Packed (default): the examples are laid end to end in one row with restarting position
ids and varlen attention, so no compute goes to padding. Padded (fallback, and for models
whose attention cannot be packed): micro-batches of similar lengths, padded on the right.
Either way only the hidden states at label positions reach the output layer.
A vision-language model's examples may carry pictures: its pass goes through `pictures.VisionForward` in either
layout (the vision tower's features in the embeddings, 3-D rotary positions per example).
The losses come back in the same order for both layouts: example by example, left to right.
`Levers` switches each speed technique of this pass off, for measuring it (see levers.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from studio.data.tokenize import IGNORE_INDEX, Labelled
from studio.data.tokenize_kinds import EncodedPair
from studio.training import varlen_attention
from studio.training.label_loss import chunk_elements, fused_head_supported, label_losses
from studio.training.levers import DEFAULT_LEVERS, Levers
from studio.training.packing import Example, Packed, deal, pack, padded_groups, plan_lanes, shifted_targets
from studio.training.pictures import TrainingPictures, VisionForward
from studio.training.shared_prompts import SharedPacking, pack_pairs, pack_shared

if TYPE_CHECKING:
    from transformers import PreTrainedModel


class TokenLosses:
    def __init__(
        self,
        model: Any,  # a peft model or a plain transformers one
        *,
        device: str,
        packing: bool,
        token_budget: int,
        batch_size: int,
        lanes: int = 1,
        levers: Levers = DEFAULT_LEVERS,
        pictures: TrainingPictures | None = None,
    ):
        """`pictures`: how a vision-language model's examples become pixel inputs (None for a text model)."""
        self.model = model
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.decoder = base.get_decoder()
        self.head = base.get_output_embeddings()
        self.levers = levers
        self.fused = levers.fused_cross_entropy and levers.label_rows_only and fused_head_supported(base)
        self.chunk = (levers.cross_entropy_chunk or chunk_elements(device)) if self.fused else None
        self.packing = packing and packing_supported(base)
        self.device, self.token_budget, self.batch_size, self.lanes = device, token_budget, batch_size, lanes
        self.vision = VisionForward(base, pictures, device) if pictures is not None else None
        if self.packing:
            name = varlen_attention.register(levers.grouped_kv_attention)
            # the language model's attention only: the vision tower's is not causal and runs picture by picture
            base.set_attn_implementation({"text_config": name} if self.vision else name)

    def describe(self) -> str:
        layout = (
            f"padding-free packing, about {self.token_budget} tokens or fewer per forward pass, attention within each "
            "example"
            if self.packing
            else f"padded micro-batches of {self.batch_size} "
            + ("grouped by length" if self.levers.length_grouping else "in order")
        )
        head = "fused chunked cross-entropy" if self.fused else "cross-entropy"
        where = "label positions only" if self.levers.label_rows_only else "every position"
        pictures = f"; {self.vision.describe()}" if self.vision else ""
        return f"Batches: {layout}{pictures}; loss: {head} at {where}."

    def lane_plans(self, examples: list[Example]) -> list[list[list[Example]]]:
        """For each lane, the micro-batches it runs one after the other (one list with one lane)."""
        if self.packing:
            return plan_lanes(examples, self.token_budget, self.lanes, self.levers.balanced_lanes)
        groups = padded_groups(examples, self.batch_size, self.levers.length_grouping)
        return deal(groups, self.lanes, lambda group: len(group) * max(len(e.input_ids) for e in group))

    def __call__(self, examples: Sequence[Labelled]) -> torch.Tensor:
        hidden, targets = self._packed(examples) if self.packing else self._padded(examples)
        if not self.levers.label_rows_only:
            return self._all_positions(hidden, targets)
        # the label rows are found on the host, where the targets are built: no device sync
        rows = (targets != IGNORE_INDEX).nonzero().squeeze(1)
        labelled = hidden.index_select(0, rows.to(self.device, non_blocking=True))
        return label_losses(labelled, self.head, targets[rows].to(self.device, non_blocking=True), self.chunk)

    def final_hidden(self, examples: Sequence[Labelled]) -> torch.Tensor:
        """(n, hidden): each example's hidden state at its last token, where a value head reads its score."""
        if self.packing:
            batch = pack(examples)
            hidden = self._packed_hidden(examples, batch.to(self.device))
            ends = batch.cu_seqlens[1:].long() - 1
        else:
            hidden, _ = self._padded(examples)
            width = max(len(e.input_ids) for e in examples)
            ends = torch.tensor([row * width + len(e.input_ids) - 1 for row, e in enumerate(examples)])
        return hidden.index_select(0, ends.to(self.device, non_blocking=True))

    def token_hidden(self, examples: Sequence[Labelled]) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-token losses at label positions, hidden states at the same positions): PPO's policy and value."""
        hidden, targets = self._packed(examples) if self.packing else self._padded(examples)
        rows = (targets != IGNORE_INDEX).nonzero().squeeze(1)
        labelled = hidden.index_select(0, rows.to(self.device, non_blocking=True))
        losses = label_losses(labelled, self.head, targets[rows].to(self.device, non_blocking=True), self.chunk)
        return losses, labelled

    def _all_positions(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """`Levers.label_rows_only` off: logits at every position, as a plain causal-LM head makes them."""
        targets = targets.to(self.device)
        losses = F.cross_entropy(self.head(hidden).float(), targets, ignore_index=IGNORE_INDEX, reduction="none")
        return losses[targets != IGNORE_INDEX]

    @property
    def shares_prompts(self) -> bool:
        """Whether answers to one prompt (preference pairs, GRPO groups) can run their prompt once for all of them
        (`shared_losses`): packed rows on a CPU (CUDA's varlen flash kernel cannot express the shared prompt) of a
        model without sliding windows."""
        config = self.decoder.config
        sliding = "sliding_attention" in (getattr(config, "layer_types", None) or []) or (
            getattr(config, "sliding_window", None) is not None and getattr(config, "use_sliding_window", False)
        )
        return self.packing and self.device == "cpu" and not sliding and self.vision is None

    def pair_losses(self, pairs: list[EncodedPair]) -> tuple[torch.Tensor, list[int]]:
        """Per-token losses of the answers of `pairs` laid out with shared prompts (chosen, then rejected, pair by
        pair), and how many tokens each answer has."""
        return self._shared(pack_pairs(pairs))

    def shared_losses(
        self, segments: Sequence[tuple[list[int], Sequence[list[int]]]]
    ) -> tuple[torch.Tensor, list[int]]:
        """Per-token losses of every answer of (prompt, answers) segments, each prompt run once (answer after
        answer, segment by segment), and how many tokens each answer has."""
        return self._shared(pack_shared(segments))

    def _shared(self, batch: SharedPacking) -> tuple[torch.Tensor, list[int]]:
        hidden = self._decode(
            batch.input_ids, batch.position_ids, batch.cu_seqlens, batch.max_length, shared_prompts=batch.shared_prompts
        )
        labelled = hidden.index_select(0, batch.label_rows.to(self.device, non_blocking=True))
        targets = batch.label_targets.to(self.device, non_blocking=True)
        return label_losses(labelled, self.head, targets, self.chunk), batch.answer_lengths

    def _packed(self, examples: Sequence[Labelled]) -> tuple[torch.Tensor, torch.Tensor]:
        batch = pack(examples)
        targets = batch.targets  # stays on the host (see __call__)
        return self._packed_hidden(examples, batch.to(self.device)), targets

    def _packed_hidden(self, examples: Sequence[Labelled], batch: Packed) -> torch.Tensor:
        if self.vision is not None:
            return self.vision.packed(list(examples), batch)
        return self._decode(batch.input_ids, batch.position_ids, batch.cu_seqlens, batch.max_length)

    def _decode(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor,
        cu_seqlens: torch.Tensor,
        max_length: int,
        **attention: Any,
    ) -> torch.Tensor:
        """Hidden states of one packed row; `attention` goes to the attention function (`shared_prompts`)."""
        output = self.decoder(
            input_ids=input_ids.to(self.device, non_blocking=True),
            position_ids=position_ids.to(self.device, non_blocking=True),
            use_cache=False,
            cu_seq_lens_q=cu_seqlens.to(self.device),
            cu_seq_lens_k=cu_seqlens.to(self.device),
            max_length_q=max_length,
            max_length_k=max_length,
            **attention,
        )
        return output.last_hidden_state[0]

    def _padded(self, examples: Sequence[Labelled]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(e.input_ids) for e in examples)
        input_ids = torch.zeros((len(examples), width), dtype=torch.long)
        mask = torch.zeros((len(examples), width), dtype=torch.long)
        targets = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
        for row, example in enumerate(examples):
            length = len(example.input_ids)
            input_ids[row, :length] = torch.tensor(example.input_ids)
            mask[row, :length] = 1
            targets[row, :length] = torch.tensor(shifted_targets(example))
        if self.vision is not None:
            return self.vision.padded(list(examples), input_ids, mask), targets.flatten()
        output = self.decoder(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device), use_cache=False)
        return output.last_hidden_state.flatten(0, 1), targets.flatten()


def packing_supported(model: PreTrainedModel) -> bool:
    """Models whose attention the varlen function cannot reproduce keep padded batches."""
    config = model.config
    return getattr(config, "attn_logit_softcapping", None) is None and not getattr(config, "is_encoder_decoder", False)
