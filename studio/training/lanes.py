"""Micro-batches of one optimizer step trained side by side on a CPU, one lane per share of the cores.

On a small CPU a single forward/backward pass cannot keep the cores busy: every GEMM split
across threads ends at a barrier where one core waits for the other, and the elementwise
passes between GEMMs split poorly. Lanes run whole micro-batches at once instead, each on
cores/lanes threads; torch releases the GIL inside its ops, so the lanes overlap. Measured
on 2 cores: +28% tokens/s at the cost of one more micro-batch of activations in memory
(docs/benchmarks.md).

Each lane trains its own share of the step's examples, shares of equal work
(`packing.plan_lanes`), and returns the sum of its gradients instead of accumulating into
`.grad`; the trainer adds them in lane order, so a run gives the same numbers every time,
however the threads are scheduled. Grad mode and autocast are per thread in torch, so whatever a
lane needs of them it sets inside its own call.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

Item = TypeVar("Item")
Result = TypeVar("Result")


def usable_cores() -> int:
    """The cores this process may use: its share when torchrun runs several processes (OMP_NUM_THREADS)."""
    share = os.environ.get("OMP_NUM_THREADS", "")
    return int(share) if share.isdigit() and int(share) > 0 else os.cpu_count() or 1


def lanes_for(device: str, requested: int | None, cores: int | None = None, every_weight: bool = False) -> int:
    """The configured lane count, or the default: 2 on a CPU with 2 or more cores (`cores`: this process's share,
    by default what it may use now), 1 on CUDA. `every_weight` (finetuning.method full): 1 by default, as each lane
    would hold a gradient of every weight; on 2 cores one lane trains about as fast (its matmuls, weight gradients
    included, split well over the cores) with 2.4 GB less on the embedded model (docs/benchmarks.md)."""
    if device != "cpu":
        return 1
    return max(1, min(requested or (1 if every_weight else 2), cores or usable_cores()))


class Lanes:
    def __init__(self, count: int):
        self.count = count
        self._pool: ThreadPoolExecutor | None = None

    def map(self, work: Callable[[Item], Result], items: Iterable[Item]) -> Iterator[Result]:
        """`work` over `items`, results in the order of `items`; serial with one lane."""
        if self.count == 1:
            return map(work, items)
        if self._pool is None:
            threads_each = max(1, usable_cores() // self.count)
            self._pool = ThreadPoolExecutor(
                self.count, thread_name_prefix="lane", initializer=torch.set_num_threads, initargs=(threads_each,)
            )
        return self._pool.map(work, items)

    def close(self) -> None:
        """Waits for work still running (after an abort, the rest of a discarded step)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def add_gradients(parameters: list[torch.nn.Parameter], gradients: tuple[torch.Tensor | None, ...]) -> None:
    for parameter, gradient in zip(parameters, gradients):
        if gradient is None:
            continue
        if parameter.grad is None:
            parameter.grad = gradient
        else:
            parameter.grad.add_(gradient)


def sum_gradients(
    total: tuple[torch.Tensor | None, ...] | None, more: tuple[torch.Tensor | None, ...] | None
) -> tuple[torch.Tensor | None, ...] | None:
    """`total` + `more`, parameter by parameter (None counts as zero); `total` is added to in place."""
    if total is None or more is None:
        return more if total is None else total
    return tuple(b if a is None else a if b is None else a.add_(b) for a, b in zip(total, more))
