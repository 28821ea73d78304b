"""Benchmarks through the studio against lm-evaluation-harness run alone, side by side in one run.

    python bench/benchmark_speed.py --model embedded --task ceval_zh_demo --batch-size 8 --rounds 2

Each side is a fresh process timed from its start to its results, so loading counts on both:
  lm_eval   `lm_eval run --model hf` on the same model folder, dtype and batch size, the bundled task folder
            included (what a user runs from lm-eval's own command line)
  ours      `qlora-studio eval --benchmark TASK --evaluation.held_out false` with the same batch size (the studio
            hands its loaded model to lm-eval as an HFLM object)
Sides alternate (lm_eval, ours, lm_eval, ours ...); printed: each side's best seconds, its accuracy, and the ratio.
Numbers are printed, never asserted (goal: ours at least as fast as lm_eval alone).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def model_folder(name: str) -> str:
    from studio.config import ModelConfig
    from studio.modeling.sources import resolve_model_path

    wanted = "embedded:SmolLM2-135M-Instruct" if name == "embedded" else name
    return str(resolve_model_path(ModelConfig(name_or_path=wanted), progress=lambda _: None))


def studio_dtype() -> str:
    from studio.config import QuantizationConfig, TrainingConfig
    from studio.modeling.compute import resolve_plan

    return str(resolve_plan(QuantizationConfig(method="none"), TrainingConfig()).weight_dtype).removeprefix("torch.")


def run_lm_eval(model: str, dtype: str, task: str, batch: int, out: Path) -> tuple[float, float]:
    command = [sys.executable, "-m", "lm_eval", "run", "--model", "hf"]
    command += ["--model_args", f"pretrained={model},dtype={dtype}", "--tasks", task, "--batch_size", str(batch)]
    command += ["--include_path", str(ROOT / "data" / "benchmarks" / task), "--device", "cpu"]
    command += ["--output_path", str(out)]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, **OFFLINE}, timeout=3600)
    seconds = time.perf_counter() - started
    (found,) = out.rglob("results_*.json")
    return seconds, json.loads(found.read_text())["results"][task]["acc,none"]


def run_ours(model: str, task: str, batch: int, out: Path) -> tuple[float, float]:
    command = [sys.executable, "-m", "studio.cli", "eval", "--model.name_or_path", model, "--benchmark", task]
    command += ["--evaluation.held_out", "false", "--evaluation.batch_size", str(batch)]
    command += ["--quantization.method", "none", "--evaluation.output_dir", str(out)]
    started = time.perf_counter()
    result = subprocess.run(
        command, check=True, capture_output=True, text=True, env={**os.environ, **OFFLINE}, timeout=3600
    )
    seconds = time.perf_counter() - started
    metrics = json.loads(result.stdout)
    value = next(v for k, v in metrics["base"].items() if re.fullmatch(rf"{re.escape(task)} · acc", k))
    return seconds, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--task", default="ceval_zh_demo")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    model, dtype = model_folder(args.model), studio_dtype()
    best: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(args.rounds):
            for side, run in (
                ("lm_eval", lambda out: run_lm_eval(model, dtype, args.task, args.batch_size, out)),
                ("ours", lambda out: run_ours(model, args.task, args.batch_size, out)),
            ):
                seconds, accuracy = run(Path(scratch) / f"{side}-{round_}")
                print(f"round {round_ + 1} {side:8} {seconds:7.1f} s  acc {accuracy:.4f}", flush=True)
                if side not in best or seconds < best[side][0]:
                    best[side] = (seconds, accuracy)
    print(f"{args.task} on {args.model} ({dtype}, batch {args.batch_size}, cpu), best of {args.rounds}:")
    for side, (seconds, accuracy) in best.items():
        print(f"  {side:8} {seconds:7.1f} s  acc {accuracy:.4f}")
    print(
        f"  ours / lm_eval: {best['lm_eval'][0] / best['ours'][0]:.2f}x the speed (same accuracy: "
        f"{abs(best['ours'][1] - best['lm_eval'][1]) < 1e-9})"
    )


if __name__ == "__main__":
    main()
