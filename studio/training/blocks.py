"""optimizer.name badam: the badam package's BlockOptimizer, one block of decoder layers trained at a time.

The package steps fp32 copies of the active block's weights with the base AdamW (so only that block has
moments) and after badam_switch_interval steps moves to the next block with a new, empty optimizer state. It also
freezes the other blocks (requires_grad False) to skip their gradients; here every trained weight stays
requires_grad, since checkpoints, the best weights and the gradient strategies find the trained weights by it:
the other blocks' gradients are computed and left unused (zero_grad clears them), and gradient clipping measures
them too. Also done here: its position kept in a checkpoint (the active block, the next one, the random order, its
step count: `state_dict` adds them as "blocks", `load_state_dict` puts the block back before its moments), the
random order drawn from a generator of its own (every process of a data-parallel run must pick the same block,
whatever else each drew from torch's generator), and nothing printed.

Weights outside the decoder layers other than the embeddings and the output layer (the final norm, a value or
reward head) are trained at every step; the embeddings and the output layer are not trained (as in BAdam).
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
import warnings
from typing import Any

import torch

from studio.config.optimizer import OptimizerConfig
from studio.errors import StudioError

LAYER = re.compile(r".*layers\.[^.]*\.")  # the package's block prefix: NAME...layers.INDEX.
EMBEDDING = re.compile(r".*embed[^.]*\.")


def block_optimizer(
    base: torch.optim.Optimizer,
    named: list[tuple[str, torch.nn.Parameter]],
    config: OptimizerConfig,
    *,
    output: torch.Tensor | None,
    seed: int,
) -> torch.optim.Optimizer:
    """`base` (AdamW over every weight in `named`, the trainable ones) stepping one block at a time. `output`: the
    output layer's weight, never trained."""
    blocks = _blocks([name for name, _ in named])
    if not blocks:
        raise StudioError("training.badam_no_blocks")
    start = config.badam_start_block
    if start is not None and start >= blocks:
        raise StudioError("training.badam_start_block_out_of_range", block=start, blocks=blocks)
    always = [name for name, p in named if not LAYER.match(name) and not EMBEDDING.match(name) and p is not output]
    return _block_class()(
        base,
        named,
        every=config.badam_switch_interval,
        start=start,
        mode=config.badam_switch_mode,
        always=always,
        seed=seed,
    )


def _blocks(names: list[str]) -> int:
    return len({match.group(0) for name in names if (match := LAYER.match(name))})


@functools.cache
def _block_class() -> type:
    from badam import BlockOptimizer

    class Blocks(BlockOptimizer):
        def __init__(
            self, base: Any, named: list, *, every: int, start: int | None, mode: str, always: list, seed: int
        ):
            self.order_seed, self.rounds = seed, 0
            self.block_order: list[int] = []
            if mode == "random" and start is None:  # the package would draw its first order from torch's generator
                start = self._random_next(_blocks([name for name, _ in named]))
            # it warns about fp32 weights (the studio's trainable weights are fp32 on purpose) and prints each switch
            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                super().__init__(
                    base,
                    named,
                    switch_block_every=every,
                    start_block=start,
                    switch_mode=mode,
                    active_modules=always,
                    verbose=0,
                )
            del self.state_dict  # the package points it at the base optimizer's: ours adds the position

        def switch_trainable_params(self, verbose: int | None = None) -> None:
            with contextlib.redirect_stdout(io.StringIO()):
                super().switch_trainable_params(verbose=0)
            for _, parameter in self.named_parameters_list:  # trained all the same (see the module's note)
                parameter.requires_grad_(True)
            prefixes = self.active_param_prefixs[: len(self.active_param_prefixs) - len(self.active_modules)]
            self.active_block = self.block_prefix_list.index(prefixes)

        def _update_active_block_idx(self) -> None:
            if self.switch_mode != "random":
                return super()._update_active_block_idx()
            self.current_block_idx = self._random_next(self.block_num)

        def _random_next(self, blocks: int) -> int:
            """The next block of a round in random order: each round a new order, seeded by the run's seed."""
            if not self.block_order:
                generator = torch.Generator().manual_seed(self.order_seed + self.rounds)
                self.block_order = torch.randperm(blocks, generator=generator).tolist()
                self.rounds += 1
            return self.block_order.pop()

        def state_dict(self) -> dict[str, Any]:
            saved = self.base_optimizer.state_dict()
            saved["blocks"] = {
                "active": self.active_block,
                "next": self.current_block_idx,
                "order": list(self.block_order),
                "rounds": self.rounds,
                "step": self.global_step,
                # the learning rate the schedule set for the next step (the base optimizer's groups, saved above, still
                # hold the last step's, which the next step overwrites with this one)
                "lr": [group["lr"] for group in self.param_groups],
            }
            return saved

        def load_state_dict(self, state_dict: dict[str, Any]) -> None:
            """After the weights: the saved block made active again (fresh fp32 copies of the restored weights),
            then its moments."""
            saved = dict(state_dict)
            position = saved.pop("blocks")
            self.current_block_idx = position["active"]
            self.switch_trainable_params()  # moves the index on: set back to what the checkpoint says next
            self.current_block_idx, self.block_order = position["next"], list(position["order"])
            self.rounds, self.global_step = position["rounds"], position["step"]
            for group, lr in zip(self.param_groups, position["lr"]):
                group["lr"] = lr
            self.base_optimizer.load_state_dict(saved)

    return Blocks
