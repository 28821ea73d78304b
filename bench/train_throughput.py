"""Training throughput, ours vs the LlamaBoard-default recipe, measured side by side in one run.

    python bench/train_throughput.py --device cpu --model tiny --steps 4 --rounds 2
    python bench/train_throughput.py --device cpu --model embedded --steps 3 --rounds 2 --json
    python bench/train_throughput.py --device cpu --model embedded --steps 3 --rounds 1 --sides baseline,ours,ours-padded,ours-gc
    python bench/train_throughput.py --device cuda --model qwen1.5-1.8b-arch --quant 4bit --steps 8 --rounds 2 --json

Each side trains in its own process (so its peak memory is its own), on the same examples in
the same order with the same LoRA/quantisation settings and seed; sides alternate A B A B so
drift in machine load hits both. Printed per side: non-padding tokens/s, samples/s, peak
memory (RSS; on CUDA also max allocated and nvidia-smi), time from process start to the first
logged loss, the loss of the first and last step, and the ratio to the baseline. The sides
and the lever variants (ours-padded, ours-gc, ...) are described in bench/throughput_sides.py.
Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROCESS_STARTED = time.time()  # before the heavy imports: they are part of the time to the first loss

HERE = Path(__file__).resolve().parent


def child(args) -> None:
    import throughput_sides as sides

    if args.side == "baseline":
        result = sides.run_baseline(args, PROCESS_STARTED)
    else:
        result = sides.run_ours(args, PROCESS_STARTED, args.side)
    print("RESULT " + json.dumps(result), flush=True)


def run_side(args, side: str) -> dict:
    command = [sys.executable, str(HERE / "train_throughput.py"), "--child", side, "--model-path", args.model_path]
    command += ["--device", args.device, "--quant", args.quant, "--steps", str(args.steps), "--data", args.data]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE), os.environ.get("PYTHONPATH", "")])}
    if args.device == "cpu" and side.startswith("ours") and side != "ours-system-malloc":
        from studio.allocator import with_fast_allocator

        env = with_fast_allocator(env)  # what the studio's service does for its CPU workers
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{side} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def prepare_model(args, scratch: Path) -> str:
    if args.model == "tiny":
        from studio.modeling.tiny import build_tiny_model

        return str(build_tiny_model(scratch / "tiny", hidden=256, layers=4))
    if args.model == "qwen1.5-1.8b-arch":
        import throughput_sides as sides

        return str(sides.build_qwen15_architecture(scratch / "qwen1.5-1.8b-arch"))
    return "embedded:SmolLM2-135M-Instruct" if args.model == "embedded" else args.model


def _row(round_index: int, side: str, r: dict, baseline: dict | None) -> str:
    ratio = f"{r['tokens_per_s'] / baseline['tokens_per_s']:5.2f}x" if baseline else "   -  "
    memory = f"RSS {r['peak_rss_mib']:6d} MiB"
    if "cuda_max_allocated_mib" in r:
        memory += f"  CUDA max {r['cuda_max_allocated_mib']} MiB  nvidia-smi {r['nvidia_smi_peak_mib']} MiB"
    losses = r["losses"]
    return (
        f"round {round_index + 1} {side:22} {r['tokens_per_s']:9.1f} tok/s {r['samples_per_s']:7.2f} samples/s  {ratio}  "
        f"first loss {r['first_loss_s']:5.1f} s  loss step 1 {losses[0]:.4f}  step {len(losses)} {losses[-1]:.4f}  {memory}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--model", default="tiny", help="'tiny' (built here), 'embedded', 'qwen1.5-1.8b-arch' (random weights), or a hub id / folder")
    parser.add_argument("--quant", choices=["none", "4bit"], default="none")
    parser.add_argument("--data", choices=["demo", "synthetic"], help="the demo datasets, or alpaca_gpt4_zh-like lengths (default: synthetic for qwen1.5-1.8b-arch)")
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps of 2 x 8 examples per side")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sides", default="baseline,ours", help="comma list: baseline, ours, or a lever variant (see throughput_sides.VARIANTS)")
    parser.add_argument("--json", action="store_true", help="print one machine-readable line last")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--model-path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.data = args.data or ("synthetic" if args.model == "qwen1.5-1.8b-arch" else "demo")
    if args.child:
        args.side = args.child
        return child(args)
    sides = args.sides.split(",")
    results: dict[str, list[dict]] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory() as scratch:
        args.model_path = prepare_model(args, Path(scratch))
        for round_index in range(args.rounds):
            for side in sides:
                result = run_side(args, side)
                results[side].append(result)
                baseline = results.get("baseline", [None])[-1] if side != "baseline" else None
                print(_row(round_index, side, result, baseline), flush=True)
    _summary(args, results)


def _summary(args, results: dict[str, list[dict]]) -> None:
    best = {side: max(runs, key=lambda r: r["tokens_per_s"]) for side, runs in results.items()}
    print(f"\n{args.model} on {args.device} (quant {args.quant}, data {args.data}, {args.steps} steps x 16 examples), best round per side:")
    base = best.get("baseline")
    for side, r in best.items():
        ratio = f"  ratio to baseline {r['tokens_per_s'] / base['tokens_per_s']:.2f}x" if base and side != "baseline" else ""
        print(f"  {side:22} {r['tokens_per_s']:9.1f} tok/s  peak RSS {r['peak_rss_mib']} MiB  first loss {r['first_loss_s']:.1f} s  "
              f"last loss {r['losses'][-1]:.4f}{ratio}")
    if args.json:
        summary = {side: {k: r[k] for k in r if k != "losses"} | {"last_loss": r["losses"][-1]} for side, r in best.items()}
        print(json.dumps({"model": args.model, "device": args.device, "quant": args.quant, "data": args.data, "steps": args.steps, "best": summary, "runs": results}))


if __name__ == "__main__":
    main()
