"""fp32 vs bf16 matmuls on this CPU, side by side: what training.precision 'auto' weighs on a CPU.

    python bench/cpu_matmul.py            # one thread, as each CPU lane uses half the cores
    python bench/cpu_matmul.py --threads 2

Times x @ W.T for the linear layers of the embedded SmolLM2-135M and of Qwen1.5-1.8B at a
512-token micro-batch, each shape in fp32 and bf16 alternately, and prints GFLOP/s and the
bf16 / fp32 ratio. It also says whether torch sees native bf16 instructions (AVX512-BF16 or
AMX), which is what makes the studio pick bf16 on a CPU. Printed, never asserted.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

TOKENS = 512
SHAPES = {  # (in, out) of the linear layers whose matmuls dominate a step
    "smollm2-135m q/o": (576, 576),
    "smollm2-135m gate/up": (576, 1536),
    "smollm2-135m down": (1536, 576),
    "smollm2-135m output layer": (576, 49152),
    "qwen1.5-1.8b q/k/v/o": (2048, 2048),
    "qwen1.5-1.8b gate/up": (2048, 5504),
    "qwen1.5-1.8b down": (5504, 2048),
}


def rate(x: torch.Tensor, weight: torch.Tensor, seconds: float) -> float:
    """GFLOP/s of x @ weight.T, repeated for about `seconds` after a warm-up."""
    for _ in range(3):
        F.linear(x, weight)
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        F.linear(x, weight)
        runs += 1
    elapsed = time.perf_counter() - started
    return 2 * x.shape[0] * x.shape[1] * weight.shape[0] * runs / elapsed / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=1.0, help="per shape, dtype and round")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from studio.modeling.compute import cpu_computes_bf16

    print(f"torch {torch.__version__}, {args.threads} thread(s), native bf16: {cpu_computes_bf16()}")
    generator = torch.Generator().manual_seed(0)
    for name, (fan_in, fan_out) in SHAPES.items():
        x = torch.randn(TOKENS, fan_in, generator=generator)
        weight = torch.randn(fan_out, fan_in, generator=generator)
        rates = {torch.float32: [], torch.bfloat16: []}
        for _ in range(args.rounds):
            for dtype in rates:
                rates[dtype].append(rate(x.to(dtype), weight.to(dtype), args.seconds))
        fp32, bf16 = max(rates[torch.float32]), max(rates[torch.bfloat16])
        print(
            f"{name:28} {TOKENS}x{fan_in} @ {fan_in}x{fan_out}   fp32 {fp32:7.1f}   bf16 {bf16:7.1f} GFLOP/s   "
            f"bf16/fp32 {bf16 / fp32:.2f}x"
        )


if __name__ == "__main__":
    main()
