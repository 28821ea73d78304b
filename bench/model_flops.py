"""Model FLOPs of a LoRA training run, counted from the shapes: the work a recipe asks for.

Tokens/s alone mixes two things: doing less work (no padding, no recomputation, the output
layer only at label rows) and doing the same work faster (kernels, lanes, fewer launches).
Dividing each side's model FLOPs by its time separates them: the ratio of the FLOPs is the
speed-up a recipe would get at equal FLOP/s.

Counted: the decoder's linear layers (forward; backward for the input gradient only, the base
weights being frozen), the LoRA matrices, causal attention (half of the L x L scores), the
output layer (logits and the gradient back to the hidden states), and with gradient
checkpointing the decoder's forward a second time. Not counted: norms, activations, softmax
and other elementwise work. Attention over a padded row is counted as causal over its full
width, though a padding mask makes kernels compute the full square: this undercounts the
padded baseline, never ours.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shapes:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int

    @classmethod
    def of(cls, config) -> Shapes:
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        return cls(
            config.hidden_size,
            config.intermediate_size,
            config.num_hidden_layers,
            heads,
            getattr(config, "num_key_value_heads", None) or heads,
            head_dim,
            config.vocab_size,
        )

    def linears(self) -> list[tuple[int, int]]:
        """(in, out) of each linear layer of one decoder layer: q, k, v, o, gate, up, down."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        d, i = self.hidden, self.intermediate
        return [(d, q), (d, kv), (d, kv), (q, d), (d, i), (d, i), (i, d)]


def training_flops(
    shapes: Shapes, sequence_lengths: list[int], head_rows: int, lora_rank: int, recompute: bool
) -> float:
    """FLOPs of one pass over the data: `sequence_lengths` are the rows the decoder runs over
    (each example when packed, each padded row's width when padded), `head_rows` the positions
    that reach the output layer."""
    tokens = sum(sequence_lengths)
    weights = sum(i * o for i, o in shapes.linears())
    lora = lora_rank * sum(i + o for i, o in shapes.linears())
    forward_linear = 2 * tokens * (weights + lora)
    backward_linear = 2 * tokens * weights + 4 * tokens * lora  # input gradient; LoRA's A and B gradients
    forward_attention = sum(2 * length * length * shapes.heads * shapes.head_dim for length in sequence_lengths)
    forward = shapes.layers * (forward_linear + forward_attention)
    backward = shapes.layers * (backward_linear + 2 * forward_attention)
    head = head_rows * 2 * shapes.hidden * shapes.vocab * 2  # logits, then the gradient to the hidden states
    return forward * (2 if recompute else 1) + backward + head
