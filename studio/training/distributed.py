"""This process's place in a data-parallel run, and the few collectives the trainer needs.

A run with several processes is launched by torchrun (`python -m torch.distributed.run ... -m
studio.worker RUN_DIR`), which sets RANK, WORLD_SIZE and LOCAL_RANK. Every rank holds the whole
model; each optimizer step's examples are dealt to the ranks by token cost, each rank trains its
share with the step's global loss weight, and the LoRA gradients are summed over the ranks (one
all-reduce of a flat bucket, as DDP does for the trainable parameters), so every rank takes the
same optimizer step as a single process with the same global batch would. Losses, metric
tallies and the abort flag are summed the same way, so all ranks agree on when to stop.
With distributed.strategy fsdp the ranks share the model's weights instead (sharding.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch

from studio.training.packing import deal

Item = TypeVar("Item")

# A rank that waits longer than this for the others gives up (a hung peer, not a slow step).
COLLECTIVE_TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    strategy: str = "ddp"  # distributed.strategy

    @classmethod
    def from_env(cls) -> Ranks:
        env = os.environ
        return cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))

    @property
    def main(self) -> bool:
        """Rank 0 alone writes events, checkpoints and the adapter."""
        return self.rank == 0

    @property
    def several(self) -> bool:
        return self.world > 1

    @property
    def sharded(self) -> bool:
        """Whether the model's layers are sharded over the ranks (FSDP) rather than whole on each (DDP)."""
        return self.several and self.strategy == "fsdp"

    def join(self, device: str) -> None:
        """Join the process group: NCCL between GPUs, gloo between CPU processes."""
        if not self.several:
            return
        import torch.distributed as dist

        if device == "cuda":
            torch.cuda.set_device(self.local_rank)
        dist.init_process_group("nccl" if device == "cuda" else "gloo", timeout=COLLECTIVE_TIMEOUT)

    def leave(self) -> None:
        if self.several:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()

    def share(self, items: list[Item], work: Callable[[Item], float]) -> list[Item]:
        """This rank's share of `items`: dealt by `work` into shares of about equal cost (possibly empty)."""
        if not self.several:
            return items
        shares = deal(items, self.world, work)
        return shares[self.rank] if self.rank < len(shares) else []

    def same_start(self, parameters: list[torch.nn.Parameter]) -> None:
        """Every rank starts from rank 0's trainable weights (DDP's rule), whatever each initialised."""
        if self.several:
            import torch.distributed as dist

            for parameter in parameters:
                dist.broadcast(parameter.data, src=0)

    def sum_gradients(self, parameters: list[torch.nn.Parameter]) -> None:
        """Sum the gradients over the ranks in one flat bucket; a rank without a share adds zeros."""
        if not self.several or not parameters:
            return
        import torch.distributed as dist

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
        flat = torch.cat([g.reshape(-1).float() for g in grads])
        dist.all_reduce(flat)
        offset = 0
        for parameter, grad in zip(parameters, grads):
            size = grad.numel()
            parameter.grad = flat[offset : offset + size].view_as(grad).to(grad.dtype)
            offset += size

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """`values` summed over the ranks (float64 on the way: exact for counts, tallies and losses)."""
        if not self.several:
            return values
        import torch.distributed as dist

        total = values.detach().to(torch.float64).clone()
        dist.all_reduce(total)
        return total.to(values.dtype)

    def most(self, count: int, device: str) -> int:
        """The largest `count` of any rank."""
        if not self.several:
            return count
        import torch.distributed as dist

        value = torch.tensor([count], dtype=torch.int64, device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return int(value.item())

    def any(self, flag: bool, device: str) -> bool:
        """Whether any rank raised `flag` (an abort request reaches one rank; all stop at the same step)."""
        if not self.several:
            return flag
        return bool(self.sum(torch.tensor([1.0 if flag else 0.0], device=device)).item() > 0)
