"""Model FLOPs of a training run (LoRA, full or freeze), counted from the shapes: the work a recipe asks for.

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
Full and freeze fine-tuning add the weight gradients of the layers they train (and, full, of
the output layer); freeze runs the backward pass only through the layers from the first trained
one up, unless the inputs are made to require gradients (gradient checkpointing does so).
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
    shapes: Shapes,
    sequence_lengths: list[int],
    head_rows: int,
    lora_rank: int,
    recompute: bool,
    trained: Trained | None = None,
) -> float:
    """FLOPs of one pass over the data: `sequence_lengths` are the rows the decoder runs over
    (each example when packed, each padded row's width when padded), `head_rows` the positions
    that reach the output layer. `trained`: what gets weight gradients (LoRA on every layer when not given)."""
    trained = trained or Trained(backward_layers=shapes.layers)
    tokens = sum(sequence_lengths)
    weights = sum(i * o for i, o in shapes.linears())
    lora = lora_rank * sum(i + o for i, o in shapes.linears())
    forward_linear = 2 * tokens * (weights + lora)
    backward_linear = 2 * tokens * weights + 4 * tokens * lora  # input gradient; LoRA's A and B gradients
    forward_attention = sum(2 * length * length * shapes.heads * shapes.head_dim for length in sequence_lengths)
    forward = shapes.layers * (forward_linear + forward_attention)
    backward = trained.backward_layers * (backward_linear + 2 * forward_attention)
    backward += trained.weight_layers * 2 * tokens * weights  # full / freeze: the trained weights' own gradients
    recomputed = trained.backward_layers * (forward_linear + forward_attention) if recompute else 0
    head = head_rows * 2 * shapes.hidden * shapes.vocab * (3 if trained.head else 2)  # logits, hidden grad, weight grad
    return forward + recomputed + backward + head


@dataclass(frozen=True)
class Trained:
    """Which weights a run trains, as FLOPs see it."""

    backward_layers: int  # decoder layers the backward pass runs through (input gradients)
    weight_layers: int = 0  # decoder layers whose linear weights get gradients (full, freeze)
    head: bool = False  # the output layer's weight gets a gradient (full; tied to the embeddings or not)


def trained_for(shapes: Shapes, method: str, freeze_layers: int, inputs_need_grad: bool) -> Trained:
    """`inputs_need_grad`: the embeddings' output requires gradients (gradient checkpointing turns it on), so the
    backward pass runs through every layer even where freeze trains only the last ones."""
    if method == "full":
        return Trained(shapes.layers, shapes.layers, head=True)
    if method == "freeze":
        count = min(shapes.layers, abs(freeze_layers))
        # the last `count` layers; counted from the first (negative), the backward still reaches back to layer 0
        reach = count if freeze_layers > 0 else shapes.layers
        return Trained(shapes.layers if inputs_need_grad else reach, count)
    return Trained(shapes.layers)
