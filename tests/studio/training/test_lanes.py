"""Lanes hand results back in order and leave the summing of gradients to the caller."""

from __future__ import annotations

import time

import torch

from studio.training.lanes import Lanes, add_gradients, lanes_for, sum_gradients


def test_results_come_back_in_input_order_whatever_finishes_first():
    lanes = Lanes(2)
    try:
        slow_first = lanes.map(lambda n: (time.sleep(0.05 * (3 - n)), n * n)[1], range(4))
        assert list(slow_first) == [0, 1, 4, 9]
    finally:
        lanes.close()


def test_lane_threads_use_their_share_of_the_cores():
    lanes = Lanes(2)
    try:
        counts = list(lanes.map(lambda _: torch.get_num_threads(), range(2)))
    finally:
        lanes.close()
    import os

    assert counts == [max(1, (os.cpu_count() or 2) // 2)] * 2


def test_one_lane_runs_in_the_calling_thread():
    import threading

    assert list(Lanes(1).map(lambda _: threading.current_thread() is threading.main_thread(), range(2))) == [True, True]


def test_cuda_never_gets_lanes_and_cpu_defaults_to_two():
    assert lanes_for("cuda", 4) == 1
    assert lanes_for("cpu", 1) == 1
    assert lanes_for("cpu", None) == min(2, __import__("os").cpu_count() or 1)


def test_full_fine_tuning_defaults_to_one_lane_unless_asked():
    """Each lane would hold a gradient of every weight (docs/benchmarks.md: about as fast, 2.4 GB less)."""
    assert lanes_for("cpu", None, cores=2, every_weight=True) == 1
    assert lanes_for("cpu", 2, cores=2, every_weight=True) == 2  # training.micro_batch_lanes still wins
    assert lanes_for("cpu", None, cores=2) == 2


def test_gradients_are_set_then_added():
    weight = torch.nn.Parameter(torch.zeros(2))
    add_gradients([weight], (torch.ones(2),))
    add_gradients([weight], (torch.full((2,), 2.0),))
    add_gradients([weight], (None,))
    assert weight.grad.tolist() == [3.0, 3.0]


def test_lane_gradients_are_summed_parameter_by_parameter():
    total = sum_gradients(None, (torch.ones(2), None))
    total = sum_gradients(total, (torch.ones(2), torch.full((1,), 5.0)))
    assert total[0].tolist() == [2.0, 2.0] and total[1].tolist() == [5.0]
    assert sum_gradients(total, None) is total
