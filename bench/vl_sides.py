"""Vision-language LoRA training, the studio against LLaMA-Factory's mllm path, measured side by side in one run.

    .venv/bin/python bench/vl_sides.py                              # 5 steps of 2 x 4 examples, 2 rounds
    .venv/bin/python bench/vl_sides.py --steps 5 --rounds 3 --json

    .venv/bin/python bench/vl_sides.py --sides llamafactory,ours,ours-padded,ours-gc --threads 1

With --sides, variants of our side from bench/throughput_sides.py's VARIANTS that change config fields run too
(ours-padded: packing off; ours-gc: gradient checkpointing on, as LLaMA-Factory has it); --threads N gives every
process N threads (OMP_NUM_THREADS; the studio then trains in that many lanes), which on a machine shared with
other work shows how much of a gap is contention for the cores.

The tiny random Qwen2-VL (studio.dev.tiny_models.build_tiny_vl_model) is built once into a temporary folder both
sides read. Both train a LoRA adapter (r 8, alpha 16, dropout 0) on the language model's linear layers, vision tower
and projector frozen (LlamaBoard's freeze defaults, the studio's too), on the first batch x accumulation x steps
records of the picture demo set shapes_zh_demo, with the same learning rate, cosine schedule, batch, accumulation,
cutoff, seed, fp32 and chat template (qwen2_vl), and the examples in the order the studio's schedule visits them
(LLaMA-Factory: disable_shuffling). The studio side is the real worker (`python -m studio.worker RUN_DIR`, launched
with the service's command and environment); the LLaMA-Factory side is bench/llamafactory_side.py in its own venv
(bench/setup_llamafactory.sh), with a stand-in for Qwen2VLProcessor (llamafactory_side.PictureProcessor says why).
Sides alternate A B A B so drift in machine load hits both.

Printed per side: non-padding tokens/s over the training loop (LLaMA-Factory counts its own tokens, the studio's
count is that of the examples it trained on: equal when the encodings agree, bench/lf_picture_parity.py), peak RSS
of the process, time from process start to the first logged loss, and the loss of every step; then ours / LF as
ratios. Numbers are printed, never asserted.
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

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from train_throughput import LF_PYTHON, _result_line  # noqa: E402  (the text bench's LLaMA-Factory plumbing)

DATASET, TEMPLATE, LR, SEED, CUTOFF = "shapes_zh_demo", "qwen2_vl", 1e-3, 42, 2048
DEMO_RECORDS = 45  # in shapes_zh_demo; longer runs go round it again, as the studio's schedule does (reshuffled)
LOSS_STEP = 5  # the loss compared, besides the last one


def run_config(args, model_path: str):
    """The studio's run: the demo set's first records (whole steps of them, so that every epoch ends with a full
    step on both sides), no validation split, every step logged, nothing saved."""
    from studio.config import RunConfig

    per_step = args.batch * args.accumulation
    records = per_step * max(1, min(args.steps, DEMO_RECORDS // per_step))

    return RunConfig().with_overrides(
        {
            "name": "vl-sides",
            "model.name_or_path": model_path,
            "model.chat_template": TEMPLATE,
            "quantization.method": "none",
            "data.datasets": f"[{DATASET}]",
            "data.max_samples": str(records),
            "data.val_size": "0",
            "data.cutoff_len": str(CUTOFF),
            "training.learning_rate": str(args.learning_rate),
            "training.max_steps": str(args.steps),
            "training.batch_size": str(args.batch),
            "training.gradient_accumulation_steps": str(args.accumulation),
            "training.precision": "fp32",
            "training.seed": str(SEED),
            "training.logging_steps": "1",
            "training.eval_steps": "1000000",
            "training.save_steps": "1000000",
            "evaluation.watch_count": "0",
        }
    )


def trained_examples(config) -> tuple[list, int]:
    """What the worker trains on, read as its _load_data reads it (same functions, same seed): the conversations in
    the order its step schedule visits them, and their tokens."""
    from studio.data.prepare import load_stage_examples, split_conversations, tokenize_for_stage
    from studio.modeling.loader import load_tokenizer
    from studio.training.batches import StepSchedule
    from studio.training.pictures import TrainingPictures

    path = config.model.name_or_path
    tokenizer = load_tokenizer(config.model, path)
    pictures = TrainingPictures.of(config.model, path)
    assert pictures is not None, f"{path} is not a vision-language model"
    split = split_conversations(load_stage_examples(config.data, "sft"), 0, config.training.seed)
    examples = tokenize_for_stage(tokenizer, split.train, config.data, "sft", pictures.encoder(tokenizer)).examples
    assert len(examples) == len(split.train), "an example was dropped: the sides would train on different data"
    schedule = StepSchedule.of(len(examples), config.training)
    order = [i for step in range(schedule.total_steps) for batch in schedule.micro_batches(step) for i in batch]
    training = config.training
    assert len(order) == training.max_steps * training.batch_size * training.gradient_accumulation_steps, "a part step"
    return [split.train[i] for i in order], sum(len(examples[i].input_ids) for i in order)


def variant_config(config, name: str):
    """Our side as `name` in throughput_sides.VARIANTS has it: config fields over the run's (levers are not config:
    the worker cannot take them)."""
    from throughput_sides import VARIANTS

    variant = VARIANTS[name]
    if variant.levers != type(variant.levers)() or variant.environment:
        raise SystemExit(f"{name} changes more than config fields (levers, environment): not a run of the worker")
    fields = {f"training.{k}": v for k, v in variant.training.items()}
    fields |= {f"quantization.{k}": v for k, v in variant.quantization.items()}
    return config.with_overrides({k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()})


def run_ours(name: str, config, tokens: int, scratch: Path) -> dict:
    """The real worker, as the service spawns it; its peak RSS from the kernel's account of the finished child."""
    from studio.control.devices import plan_devices
    from studio.control.launcher import worker_command
    from studio.control.service import worker_environment
    from studio.runs.folder import RunFolder

    folder = RunFolder(Path(tempfile.mkdtemp(prefix=f"{name}-", dir=scratch)))
    config = variant_config(config, name)
    config.save(folder.config_file)
    devices = plan_devices(config)
    launched = time.time()
    with open(folder.log_file, "ab") as log:
        child = subprocess.Popen(
            worker_command(sys.executable, str(folder.path), devices, config),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=worker_environment(devices),
        )
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
    events, _ = folder.read_events()
    steps = [e for e in events if e.type == "step"]
    if child.returncode != 0 or not steps:
        raise SystemExit(f"{name} failed (exit {child.returncode}):\n{folder.log_file.read_text()[-3000:]}")
    started = next(e for e in events if e.type == "started")
    layout = next(e.message for e in events if e.type == "log" and e.message.startswith("Batches:"))
    seconds = steps[-1].elapsed_s  # from the training loop's start, as LLaMA-Factory's on_train_begin/end
    return {
        "tokens_per_s": tokens / seconds,
        "seconds": seconds,
        "first_loss_s": steps[0].time - launched,
        "losses": [s.loss for s in steps],
        "tokens": tokens,
        "peak_rss_mib": round(usage.ru_maxrss / 1024),
        "trainable_params": started.trainable_params,
        "layout": layout,
    }


def run_llamafactory(args, config, conversations: list) -> dict:
    if not LF_PYTHON.exists():
        raise SystemExit(f"No LLaMA-Factory venv at {LF_PYTHON}: run `bash bench/setup_llamafactory.sh` first.")
    model = config.model
    job = {
        "model_path": model.name_or_path,
        "conversations": conversations,
        "template": TEMPLATE,
        "steps": args.steps,
        "batch": args.batch,
        "accumulation": args.accumulation,
        "device": "cpu",
        "quant": "none",
        "learning_rate": args.learning_rate,
        "seed": SEED,
        "bf16": False,
        "method": "lora",
        "pictures": {"image_min_pixels": model.image_min_pixels, "image_max_pixels": model.image_max_pixels},
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", encoding="utf-8") as job_file:
        json.dump(job, job_file, ensure_ascii=False)
        job_file.flush()
        done = subprocess.run(
            [str(LF_PYTHON), str(HERE / "llamafactory_side.py"), job_file.name], capture_output=True, text=True
        )
    return _result_line("llamafactory", done)


def _row(label: str, r: dict, lf: dict | None) -> str:
    ratios = ""
    if lf is not None and r is not lf:
        ratios = (
            f"  /LF: tokens/s {r['tokens_per_s'] / lf['tokens_per_s']:.2f}x, "
            f"peak RSS {r['peak_rss_mib'] / lf['peak_rss_mib']:.2f}x"
        )
    shown = sorted({1, min(LOSS_STEP, len(r["losses"])), len(r["losses"])})
    losses = " ".join(f"{n}: {r['losses'][n - 1]:.4f}" for n in shown)
    return (
        f"{label:14} {r['tokens_per_s']:8.1f} tok/s ({r['tokens']} tokens in {r['seconds']:.1f} s)  peak RSS "
        f"{r['peak_rss_mib']:5d} MiB  first loss {r['first_loss_s']:5.1f} s  trainable {r['trainable_params']}  "
        f"loss at step {losses}{ratios}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=5, help="optimizer steps (past 45 records: another epoch)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--accumulation", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=LR)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--sides", default="llamafactory,ours", help="comma list: llamafactory, ours, or a config variant of ours"
    )
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS of every side's process (default: unset)")
    parser.add_argument("--json", action="store_true", help="print one machine-readable line last")
    args = parser.parse_args()
    if args.threads:  # inherited by both sides' processes
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    from studio.dev.tiny_models import build_tiny_vl_model

    sides = args.sides.split(",")
    results: dict[str, list[dict]] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory() as scratch:
        config = run_config(args, str(build_tiny_vl_model(Path(scratch) / "tiny-vl")))
        conversations, tokens = trained_examples(config)
        for round_index in range(args.rounds):
            for side in sides:
                if side == "llamafactory":
                    result = run_llamafactory(args, config, conversations)
                else:
                    result = run_ours(side, config, tokens, Path(scratch))
                results[side].append(result)
                lf = results.get("llamafactory", [None])[-1] if results.get("llamafactory") else None
                print(f"round {round_index + 1} " + _row(side, result, lf), flush=True)
    _summary(args, results)


def _summary(args, results: dict[str, list[dict]]) -> None:
    best = {side: max(runs, key=lambda r: r["tokens_per_s"]) for side, runs in results.items()}
    lf = best.get("llamafactory")
    threads = f", OMP_NUM_THREADS {args.threads}" if args.threads else ""
    print(
        f"\ntiny Qwen2-VL on {DATASET}, CPU fp32{threads}, LoRA r8 on the language model, {args.steps} steps x "
        f"{args.batch} x {args.accumulation} examples, lr {args.learning_rate}; best round per side:"
    )
    for side, r in best.items():
        print("  " + _row(side, r, lf))
    for side, r in best.items():
        if side == "llamafactory":
            continue
        print(f"  {side}: {r['layout']}")
        if lf is not None:
            losses = "; ".join(
                f"loss after step {n}: {r['losses'][n - 1]:.4f} vs LF {lf['losses'][n - 1]:.4f} "
                f"({r['losses'][n - 1] - lf['losses'][n - 1]:+.4f})"
                for n in sorted({min(LOSS_STEP, args.steps), args.steps})
            )
            print(
                f"  {side} / LLaMA-Factory: tokens/s {r['tokens_per_s'] / lf['tokens_per_s']:.2f}x, peak RSS "
                f"{r['peak_rss_mib'] / lf['peak_rss_mib']:.2f}x; {losses}"
            )
    if args.json:
        settings = {
            "steps": args.steps,
            "batch": args.batch,
            "accumulation": args.accumulation,
            "threads": args.threads,
        }
        print(json.dumps({**settings, "runs": results}))


if __name__ == "__main__":
    main()
