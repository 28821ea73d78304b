"""Training throughput, ours vs the LlamaBoard-default recipe, measured side by side in one run.

    python bench/train_throughput.py --device cpu --model tiny --steps 4 --rounds 2
    python bench/train_throughput.py --device cpu --model embedded --steps 3 --rounds 2 --json
    python bench/train_throughput.py --device cpu --model embedded --steps 3 --rounds 1 \
        --sides baseline,ours,ours-padded,ours-gc
    python bench/train_throughput.py --device cuda --model qwen1.5-1.8b-arch --quant 4bit --steps 8 --rounds 2 --json
    python bench/train_throughput.py --model embedded --steps 5 --sides llamafactory,baseline,ours  # after its setup
    python bench/train_throughput.py --model embedded --steps 6 --rounds 1 --devices 2   # 1 vs 2 processes
    python bench/train_throughput.py --model embedded --steps 5 --sides llamafactory,ours --method full
    python bench/train_throughput.py --model embedded --steps 5 --sides llamafactory,ours --method freeze

Each side trains in its own process (so its peak memory is its own), on the same examples in
the same order with the same LoRA/quantisation settings and seed (or, with --method full or freeze,
training the same weights: all, or the last --freeze-layers layers); sides alternate A B A B so
drift in machine load hits both. Printed per side: non-padding tokens/s, samples/s, peak
memory (RSS; on CUDA also max allocated and nvidia-smi), time from process start to the first
logged loss, the loss of the first and last step, and the ratio to each baseline present:
`llamafactory` (LLaMA-Factory itself in its own venv, bench/llamafactory_side.py) and
`baseline` (its web-UI recipe reproduced with HF Trainer + PEFT in the studio's venv, which
also runs where LLaMA-Factory cannot be installed, e.g. with the Qwen architecture's
synthetic token data). The lever variants (ours-padded, ours-gc, ...) are described in
bench/throughput_sides.py.
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
    if side == "llamafactory":
        return run_llamafactory(args)
    command = [sys.executable, str(HERE / "train_throughput.py"), "--child", side, "--model-path", args.model_path]
    command += [
        "--device",
        args.device,
        "--quant",
        args.quant,
        "--steps",
        str(args.steps),
        "--data",
        args.data,
        "--precision",
        args.precision,
        "--method",
        args.method,
        "--freeze-layers",
        str(args.freeze_layers),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE), os.environ.get("PYTHONPATH", "")])}
    if side != "baseline":
        import throughput_sides as sides

        from studio.allocator import with_worker_allocator

        env |= sides.VARIANTS[side].environment
        if args.device == "cpu":
            env = with_worker_allocator(env)  # what the studio's service does for its CPU workers
    return _result_line(side, subprocess.run(command, capture_output=True, text=True, env=env))


LF_PYTHON = Path(
    os.environ.get("LLAMAFACTORY_PYTHON", HERE.parent / ".bench-venvs" / "llamafactory" / "bin" / "python")
)
LF_TEMPLATES = {"embedded": "smollm2", "qwen1.5-1.8b-arch": "qwen"}


def run_llamafactory(args) -> dict:
    """LLaMA-Factory itself, in its own venv (bench/setup_llamafactory.sh), on the same conversations."""
    import throughput_sides as sides
    import torch

    from studio.config import ModelConfig
    from studio.modeling.sources import resolve_model_path

    if not LF_PYTHON.exists():
        raise SystemExit(f"No LLaMA-Factory venv at {LF_PYTHON}: run `bash bench/setup_llamafactory.sh` first.")
    if args.data != "demo" or not (args.lf_template or args.model in LF_TEMPLATES):
        raise SystemExit(
            "The llamafactory side needs --data demo and a chat template (--lf-template NAME for this model)."
        )
    conversations = sides.ordered_like_ours(sides.demo_conversations(args.steps * sides.BATCH * sides.ACCUMULATION))
    job = {
        "model_path": str(resolve_model_path(ModelConfig(name_or_path=args.model_path))),
        "conversations": conversations,
        "template": args.lf_template or LF_TEMPLATES[args.model],
        "steps": args.steps,
        "device": args.device,
        "quant": args.quant,
        "learning_rate": sides.LR,
        "seed": sides.SEED,
        "bf16": sides.plan_for(args).weight_dtype == torch.bfloat16,
        "method": args.method,
        "freeze_layers": args.freeze_layers,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", encoding="utf-8") as job_file:
        json.dump(job, job_file, ensure_ascii=False)
        job_file.flush()
        done = subprocess.run(
            [str(LF_PYTHON), str(HERE / "llamafactory_side.py"), job_file.name], capture_output=True, text=True
        )
    return _result_line("llamafactory", done)


def _result_line(side: str, done: subprocess.CompletedProcess) -> dict:
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{side} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def prepare_model(args, scratch: Path) -> str:
    if args.model == "tiny":
        from studio.dev.tiny_models import build_tiny_model

        return str(build_tiny_model(scratch / "tiny", hidden=256, layers=4))
    if args.model == "qwen1.5-1.8b-arch":
        import throughput_sides as sides

        folder = Path(args.model_cache) if args.model_cache else scratch / "qwen1.5-1.8b-arch"
        if not (folder / "config.json").is_file():
            sides.build_qwen15_architecture(folder)
        return str(folder)
    return "embedded:SmolLM2-135M-Instruct" if args.model == "embedded" else args.model


REFERENCES = ("llamafactory", "baseline")


def _steady(r: dict) -> str:
    return (
        f"{r['steady_tokens_per_s']:9.1f} tok/s" if r.get("steady_tokens_per_s") else "      -"
    )  # the sides the others are compared with


def _flop_rate(r: dict) -> str:
    """Model FLOPs (bench/model_flops.py) per second of the run; LLaMA-Factory's side reports none."""
    return f"{r['model_flops'] / r['seconds'] / 1e9:6.1f} GFLOP/s" if r.get("model_flops") else "     - GFLOP/s"


def _work_ratios(r: dict, references: dict[str, dict]) -> str:
    """How much less work each recipe asks for: the speed-up it would get at equal FLOP/s."""
    return "  ".join(
        f"{ref['model_flops'] / r['model_flops']:.2f}x {name}"
        for name, ref in references.items()
        if ref.get("model_flops")
    )


def _ratios(r: dict, references: dict[str, dict]) -> str:
    return "  ".join(f"{r['tokens_per_s'] / ref['tokens_per_s']:5.2f}x {name}" for name, ref in references.items())


def _memory_ratios(r: dict, references: dict[str, dict]) -> str:
    return "  ".join(f"{r['peak_rss_mib'] / ref['peak_rss_mib']:.2f}x {name}" for name, ref in references.items())


def _row(round_index: int, side: str, r: dict, references: dict[str, dict]) -> str:
    ratio = _ratios(r, references) if side not in REFERENCES else "-"
    memory = f"RSS {r['peak_rss_mib']:6d} MiB"
    if side not in REFERENCES and references:
        memory += f" ({_memory_ratios(r, references)})"
    if "cuda_max_allocated_mib" in r:
        memory += f"  CUDA max {r['cuda_max_allocated_mib']} MiB  nvidia-smi {r['nvidia_smi_peak_mib']} MiB"
    losses = r["losses"]
    return (
        f"round {round_index + 1} {side:22} {r['tokens_per_s']:9.1f} tok/s {r['samples_per_s']:7.2f} samples/s  "
        f"{ratio}  "
        f"after step 1 {_steady(r)}  {_flop_rate(r)}  "
        f"first loss {r['first_loss_s']:5.1f} s  loss step 1 {losses[0]:.4f}  step {len(losses)} {losses[-1]:.4f}  "
        f"{memory}  allocator: {r.get('allocator', 'not reported')}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--model",
        default="tiny",
        help="'tiny' (built here), 'embedded', 'qwen1.5-1.8b-arch' (random weights), or a hub id / folder",
    )
    parser.add_argument("--quant", choices=["none", "4bit"], default="none")
    parser.add_argument(
        "--precision",
        choices=["auto", "bf16", "fp32"],
        default="auto",
        help="training.precision of every side (LLaMA-Factory: its compute type); 'auto' as the studio picks it",
    )
    parser.add_argument(
        "--data",
        choices=["demo", "synthetic"],
        help="the demo datasets, or alpaca_gpt4_zh-like lengths (default: synthetic for qwen1.5-1.8b-arch)",
    )
    parser.add_argument(
        "--method",
        choices=["lora", "full", "freeze"],
        default="lora",
        help="finetuning.method of every side (LLaMA-Factory: its finetuning_type); full and freeze take no --quant",
    )
    parser.add_argument(
        "--freeze-layers",
        type=int,
        default=2,
        help="with --method freeze: the last N decoder layers train, every module of them (LLaMA-Factory's default 2)",
    )
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps of 2 x 8 examples per side")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--sides",
        default="baseline,ours",
        help="comma list: llamafactory (LLaMA-Factory itself, see bench/llamafactory_side.py), baseline (its recipe "
        "reproduced), ours, or a lever variant (see throughput_sides.VARIANTS)",
    )
    parser.add_argument(
        "--lf-template", help="LLaMA-Factory template for the llamafactory side (default: smollm2 for embedded)"
    )
    parser.add_argument(
        "--model-cache",
        help="folder to build the qwen1.5-1.8b-arch model in once and reuse (default: a temporary folder)",
    )
    parser.add_argument(
        "--devices",
        type=int,
        help="instead of sides: the studio's data-parallel scaling, 1 process against N (bench/device_scaling.py)",
    )
    parser.add_argument(
        "--strategies",
        default="ddp",
        help="with --devices: distributed.strategy of the N-process side, comma-separated (ddp,fsdp: both)",
    )
    parser.add_argument("--json", action="store_true", help="print one machine-readable line last")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--model-path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.data = args.data or ("synthetic" if args.model == "qwen1.5-1.8b-arch" else "demo")
    if args.method != "lora" and args.quant != "none":
        parser.error("--method full and freeze train the weights themselves: no --quant")
    if args.child:
        args.side = args.child
        return child(args)
    if args.devices:
        from device_scaling import scaling

        with tempfile.TemporaryDirectory() as scratch:
            return scaling(args, prepare_model(args, Path(scratch)))
    sides = args.sides.split(",")
    results: dict[str, list[dict]] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory() as scratch:
        args.model_path = prepare_model(args, Path(scratch))
        for round_index in range(args.rounds):
            for side in sides:
                result = run_side(args, side)
                results[side].append(result)
                references = {name: results[name][-1] for name in REFERENCES if results.get(name)}
                print(_row(round_index, side, result, references), flush=True)
    _summary(args, results)


def _method(args) -> str:
    return f"freeze, last {args.freeze_layers} layers" if args.method == "freeze" else args.method


def _summary(args, results: dict[str, list[dict]]) -> None:
    best = {side: max(runs, key=lambda r: r["tokens_per_s"]) for side, runs in results.items()}
    print(
        f"\n{args.model} on {args.device} ({_method(args)}, quant {args.quant}, precision {args.precision}, "
        f"data {args.data}, "
        f"{args.steps} steps x 16 examples), best round per side:"
    )
    references = {name: best[name] for name in REFERENCES if name in best}
    for side, r in best.items():
        ratio = f"  ratio {_ratios(r, references)}" if references and side not in REFERENCES else ""
        steady = ""
        if r.get("steady_tokens_per_s") and all(ref.get("steady_tokens_per_s") for ref in references.values()):
            steady = "  after step 1 " + _steady(r)
            if side not in REFERENCES and references:
                steady += (
                    " ("
                    + "  ".join(
                        f"{r['steady_tokens_per_s'] / ref['steady_tokens_per_s']:.2f}x {n}"
                        for n, ref in references.items()
                    )
                    + ")"
                )
        memory = (
            f"  CUDA max {r['cuda_max_allocated_mib']} MiB  nvidia-smi {r['nvidia_smi_peak_mib']} MiB"
            if "cuda_max_allocated_mib" in r
            else ""
        )
        memory_ratio = f" ({_memory_ratios(r, references)})" if references and side not in REFERENCES else ""
        print(
            f"  {side:22} {r['tokens_per_s']:9.1f} tok/s{steady}{memory} on {r['tokens']} tokens  peak RSS "
            f"{r['peak_rss_mib']} MiB{memory_ratio}  first loss {r['first_loss_s']:.1f} s  "
            f"last loss {r['losses'][-1]:.4f}{ratio}"
        )
        print(f"  {'':22} allocator: {r.get('allocator', 'not reported')}")
        if r.get("model_flops"):
            work = _work_ratios(r, references) if side not in REFERENCES else ""
            print(
                f"  {'':22} model work {r['model_flops'] / 1e12:.3g} TFLOP, {_flop_rate(r).strip()}"
                + (f"; less work than (FLOP ratio) {work}" if work else "")
            )
    if args.json:
        summary = {
            side: {k: r[k] for k in r if k != "losses"} | {"last_loss": r["losses"][-1]} for side, r in best.items()
        }
        print(
            json.dumps(
                {
                    "model": args.model,
                    "device": args.device,
                    "quant": args.quant,
                    "precision": args.precision,
                    "method": args.method,
                    "freeze_layers": args.freeze_layers if args.method == "freeze" else None,
                    "data": args.data,
                    "steps": args.steps,
                    "best": summary,
                    "runs": results,
                }
            )
        )


if __name__ == "__main__":
    main()
