"""DPO, ours vs LLaMA-Factory's DPO stage, on the same pairs in the same order, side by side.

    bash bench/setup_llamafactory.sh                                   # once: LLaMA-Factory + trl in .bench-venvs/
    python bench/dpo_throughput.py --model embedded --steps 4          # dpo_zh_demo, 2 x 8 pairs a step
    python bench/dpo_throughput.py --model tiny --steps 3 --sides ours,ours-documents

Sides, each in its own process (so its peak memory is its own):
  llamafactory    LLaMA-Factory 0.9.5's stage dpo with LlamaBoard's defaults (bench/llamafactory_dpo_side.py):
                  chosen and rejected padded into one batch, full logits, a reference forward per step
                  (the adapter turned off), gradient checkpointing on
  ours            the studio's trainer, stage dpo, its defaults for the device: pairs packed with the prompt
                  run once for both answers, label-only chunked cross-entropy, reference log-probabilities
                  computed once before the first step (that pass is counted in our time)
  ours-documents  ours with each answer packed as a document of its own (the prompt run twice)
Both use beta 0.1, the sigmoid loss, lr 1e-4 cosine, LoRA r 8 / alpha 16 on all linear layers, the
base model (adapter off) as reference, and the same precision. Printed: loss, reward margin and
accuracy at step 1 and step N, tokens/s (prompt + chosen and prompt + rejected, counted with the
studio's encoding for every side, so the ratio is the ratio of training times), peak RSS and the
ratios to LLaMA-Factory. Numbers are printed, never asserted (goal: >= 2x tokens/s on a CPU at
<= 1.15x LLaMA-Factory's peak memory).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PROCESS_STARTED = time.time()
HERE = Path(__file__).resolve().parent
BATCH, ACCUMULATION, LR, BETA, SEED = 2, 8, 1e-4, 0.1, 42
LF_PYTHON = Path(
    os.environ.get("LLAMAFACTORY_PYTHON", HERE.parent / ".bench-venvs" / "llamafactory" / "bin" / "python")
)
LF_TEMPLATES = {"embedded": "smollm2", "tiny": "chatml"}


def demo_pairs(count: int) -> list[dict]:
    """The first `count` pairs of data/dpo_zh_demo.json, as alpaca records (what LLaMA-Factory reads)."""
    from studio.paths import BUNDLED_DATA_DIR

    rows = json.loads((BUNDLED_DATA_DIR / "dpo_zh_demo.json").read_text(encoding="utf-8"))
    return rows[:count]


def encoded_pairs(tokenizer, count: int) -> list:
    """The same pairs read through the studio's registry (dpo_zh_demo) and encoded as its trainer encodes them."""
    from studio.config import DataConfig
    from studio.data.prepare import load_stage_examples
    from studio.data.tokenize_kinds import encode_pair

    [loaded] = load_stage_examples(DataConfig(datasets=["dpo_zh_demo"]), "dpo")
    return [encode_pair(tokenizer, example, cutoff_len=2048) for example in loaded.examples[:count]]


def pair_tokens(pairs) -> int:
    return sum(2 * len(p.prompt) + len(p.chosen) + len(p.rejected) for p in pairs)


# -- our side (a child process of the studio's venv) ---------------------------------------------------------


def run_ours(args) -> dict:
    import resource

    import torch

    from studio.config import LoraConfig, ModelConfig, PreferenceConfig, QuantizationConfig, TrainingConfig
    from studio.modeling.compute import resolve_plan
    from studio.modeling.loader import load_tokenizer
    from studio.modeling.sources import resolve_model_path
    from studio.training.loop import Trainer
    from studio.training.trainable import load_trainable_model

    training = TrainingConfig(
        stage="dpo",
        learning_rate=LR,
        max_steps=args.steps,
        batch_size=BATCH,
        gradient_accumulation_steps=ACCUMULATION,
        logging_steps=1,
        eval_steps=10**6,
        save_steps=10**6,
        seed=SEED,
        early_stopping_patience=None,
    )
    plan = resolve_plan(QuantizationConfig(method="none"), training)
    model_config = ModelConfig(name_or_path=args.model_path)
    path = resolve_model_path(model_config, progress=lambda _: None)
    tokenizer = load_tokenizer(model_config, path)
    pairs = encoded_pairs(tokenizer, args.steps * BATCH * ACCUMULATION)  # our schedule orders them (seeded)
    torch.manual_seed(SEED)
    model = load_trainable_model(
        model=model_config,
        quantization=QuantizationConfig(method="none"),
        training=training,
        lora=LoraConfig(),
        model_path=path,
        plan=plan,
    )
    events: list = []
    trainer = Trainer(
        model,
        train=pairs,
        val=[],
        config=training,
        lora=LoraConfig(),
        plan=plan,
        checkpoints_dir=Path(tempfile.mkdtemp()),
        emit=events.append,
        abort=threading.Event(),
        preference=PreferenceConfig(beta=BETA),
    )
    if args.side == "ours-documents":
        trainer.objective.token_losses = _NoSharedPrompts(trainer.token_losses)
    started = time.perf_counter()
    trainer.compute_reference(base=True)
    trainer.run()
    seconds = time.perf_counter() - started
    steps = [e for e in events if e.type == "step"]
    preference = [e for e in events if e.type == "preference"]
    return {
        "seconds": seconds,
        "tokens": pair_tokens(pairs),
        "first_loss_s": steps[0].time - PROCESS_STARTED,
        "losses": [e.loss for e in steps],
        "margins": [e.reward_margin for e in preference],
        "accuracies": [e.reward_accuracy for e in preference],
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "layout": trainer.describe(),
    }


class _NoSharedPrompts:
    """The studio's TokenLosses with the shared-prompt layout off: each answer a document of its own."""

    def __init__(self, inner):
        self.inner, self.shares_prompts = inner, False

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, documents):
        return self.inner(documents)


def ordered_like_ours(pairs: list, steps: int) -> list:
    """The pairs in the order the studio's schedule visits them, so LLaMA-Factory (unshuffled) sees the same steps."""
    from studio.training.batches import StepSchedule

    schedule = StepSchedule(len(pairs), BATCH, ACCUMULATION, 1, None, SEED)
    return [pairs[i] for step in range(steps) for batch in schedule.micro_batches(step) for i in batch]


# -- the driver ------------------------------------------------------------------------------------------------


def run_side(args, side: str) -> dict:
    if side == "llamafactory":
        return run_llamafactory(args)
    command = [
        sys.executable,
        str(HERE / "dpo_throughput.py"),
        "--child",
        side,
        "--model-path",
        args.model_path,
        "--steps",
        str(args.steps),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE), os.environ.get("PYTHONPATH", "")])}
    from studio.allocator import with_worker_allocator

    return _result_line(side, subprocess.run(command, capture_output=True, text=True, env=with_worker_allocator(env)))


def run_llamafactory(args) -> dict:
    import torch

    from studio.config import ModelConfig, QuantizationConfig, TrainingConfig
    from studio.modeling.compute import resolve_plan
    from studio.modeling.loader import load_tokenizer
    from studio.modeling.sources import resolve_model_path

    if not LF_PYTHON.exists():
        raise SystemExit(f"No LLaMA-Factory venv at {LF_PYTHON}: run `bash bench/setup_llamafactory.sh` first.")
    path = str(resolve_model_path(ModelConfig(name_or_path=args.model_path), progress=lambda _: None))
    tokenizer = load_tokenizer(ModelConfig(name_or_path=args.model_path), path)
    rows = demo_pairs(args.steps * BATCH * ACCUMULATION)
    order = ordered_like_ours(list(range(len(rows))), args.steps)
    plan = resolve_plan(QuantizationConfig(method="none"), TrainingConfig())
    job = {
        "model_path": path,
        "pairs": [rows[i] for i in order],
        "template": args.lf_template or LF_TEMPLATES[args.model],
        "steps": args.steps,
        "batch": BATCH,
        "accumulation": ACCUMULATION,
        "learning_rate": LR,
        "beta": BETA,
        "seed": SEED,
        "bf16": plan.weight_dtype == torch.bfloat16,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", encoding="utf-8") as job_file:
        json.dump(job, job_file, ensure_ascii=False)
        job_file.flush()
        env = {**os.environ, "PYTHONPATH": str(HERE)}
        done = subprocess.run(
            [str(LF_PYTHON), str(HERE / "llamafactory_dpo_side.py"), job_file.name],
            capture_output=True,
            text=True,
            env=env,
        )
    result = _result_line("llamafactory", done)
    result["tokens"] = pair_tokens(encoded_pairs(tokenizer, len(rows)))  # the same pairs, counted as ours counts them
    return result


def _result_line(side: str, done: subprocess.CompletedProcess) -> dict:
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{side} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1].removeprefix("RESULT "))
    return result


def prepare_model(args, scratch: Path) -> str:
    if args.model == "tiny":
        from studio.dev.tiny_models import build_tiny_model

        return str(build_tiny_model(scratch / "tiny", hidden=256, layers=4))
    return "embedded:SmolLM2-135M-Instruct" if args.model == "embedded" else args.model


def _row(side: str, r: dict, reference: dict | None) -> str:
    rate = r["tokens"] / r["seconds"]
    ratio = ""
    if reference and side != "llamafactory":
        ratio = (
            f"  {rate / (reference['tokens'] / reference['seconds']):.2f}x tok/s,"
            f" {r['peak_rss_mib'] / reference['peak_rss_mib']:.2f}x peak RSS of llamafactory"
        )
    n = len(r["losses"])
    return (
        f"  {side:15} {rate:8.1f} tok/s  {r['seconds']:7.1f} s  peak RSS {r['peak_rss_mib']:5d} MiB  "
        f"step 1: loss {r['losses'][0]:.4f} margin {r['margins'][0]:+.4f} acc {r['accuracies'][0]:.2f}  "
        f"step {n}: loss {r['losses'][-1]:.4f} margin {r['margins'][-1]:+.4f} acc {r['accuracies'][-1]:.2f}{ratio}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="embedded", help="'embedded', 'tiny' (built here) or a model folder")
    parser.add_argument(
        "--steps", type=int, default=4, help=f"optimizer steps of {BATCH} x {ACCUMULATION} pairs per side"
    )
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--sides", default="llamafactory,ours")
    parser.add_argument("--lf-template", help="LLaMA-Factory template (default: smollm2 for embedded, chatml for tiny)")
    parser.add_argument("--json", action="store_true", help="print one machine-readable line last")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--model-path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.side = args.child
        print("RESULT " + json.dumps(run_ours(args)), flush=True)
        return
    sides = args.sides.split(",")
    best: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as scratch:
        args.model_path = prepare_model(args, Path(scratch))
        for round_index in range(args.rounds):
            results = {side: run_side(args, side) for side in sides}
            for side, result in results.items():
                result["tokens_per_s"] = result["tokens"] / result["seconds"]
                if side not in best or result["tokens_per_s"] > best[side]["tokens_per_s"]:
                    best[side] = result
            print(
                f"round {round_index + 1}: {args.model} on cpu, {args.steps} steps x {BATCH * ACCUMULATION} pairs of "
                "dpo_zh_demo"
            )
            for side, result in results.items():
                print(_row(side, result, results.get("llamafactory")), flush=True)
            if "ours" in results:
                print(f"  ours: {results['ours']['layout']}")
    if args.json:  # each side's fastest round
        print(json.dumps({"model": args.model, "steps": args.steps, "best": best}))


if __name__ == "__main__":
    main()
