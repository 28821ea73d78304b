"""Where the time of a training step goes: the studio's loop under torch.profiler, after warm-up.

    python bench/step_profile.py --model tiny
    python bench/step_profile.py --device cuda --model qwen1.5-1.8b-arch --quant 4bit --model-cache /tmp/qwen

Prints the wall time of the profiled steps, on CUDA the share of it the GPU spent running
kernels (a low share means the step is bound by launching them, not by running them), and the
operators that took the most time. The profiler does not see the threads of CPU lanes: on a
CPU, profile `--variant ours-one-lane`. Printed, never asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import throughput_sides as sides
from train_throughput import prepare_model

WARMUP_STEPS, ACTIVE_STEPS = 3, 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--model", default="tiny", help="as in train_throughput.py")
    parser.add_argument("--quant", choices=["none", "4bit"], default="none")
    parser.add_argument("--data", choices=["demo", "synthetic"])
    parser.add_argument("--variant", default="ours", help="a variant of throughput_sides.VARIANTS")
    parser.add_argument("--model-cache", help="as in train_throughput.py")
    parser.add_argument("--rows", type=int, default=20, help="operators to list")
    args = parser.parse_args()
    args.data = args.data or ("synthetic" if args.model == "qwen1.5-1.8b-arch" else "demo")
    args.steps = WARMUP_STEPS + ACTIVE_STEPS
    with tempfile.TemporaryDirectory() as scratch:
        args.model_path = prepare_model(args, Path(scratch))
        profile(args, Path(scratch))


def profile(args, scratch: Path) -> None:
    import torch
    from torch.profiler import ProfilerActivity, schedule

    from studio.config import LoraConfig
    from studio.training.loop import Trainer

    variant = sides.VARIANTS[args.variant]
    training = sides.ours_training(variant, args.steps)
    model, examples, plan = sides._setup_ours(args, training, variant)
    cuda = args.device == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    marks: list[float] = []
    recorded = []  # the active steps' averages, handed over once they end
    window = schedule(wait=0, warmup=WARMUP_STEPS, active=ACTIVE_STEPS, repeat=1)
    ready = lambda finished: recorded.append(finished.key_averages())  # noqa: E731
    with torch.profiler.profile(activities=activities, schedule=window, on_trace_ready=ready) as prof:

        def emit(event):
            if event.type == "step":
                if cuda:
                    torch.cuda.synchronize()
                marks.append(time.perf_counter())
                prof.step()

        Trainer(
            model,
            train=examples,
            val=[],
            config=training,
            lora=LoraConfig(),
            plan=plan,
            checkpoints_dir=scratch,
            emit=emit,
            abort=threading.Event(),
            levers=variant.levers,
        ).run()
    report(recorded[0], marks, cuda, args.rows)


def report(averages, marks: list[float], cuda: bool, rows: int) -> None:
    wall = marks[-1] - marks[WARMUP_STEPS - 1]
    print(
        f"{ACTIVE_STEPS} steps after {WARMUP_STEPS} of warm-up: {wall:.2f} s wall, {wall / ACTIVE_STEPS:.3f} s per step"
    )
    if cuda:
        kernels = sum(event.self_device_time_total for event in averages) / 1e6
        print(f"GPU running kernels: {kernels:.2f} s of {wall:.2f} s ({kernels / wall:.0%})")
    print(averages.table(sort_by="self_device_time_total" if cuda else "self_cpu_time_total", row_limit=rows))


if __name__ == "__main__":
    main()
