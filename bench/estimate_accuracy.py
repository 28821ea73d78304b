"""Will it fit, how long: the Train tab's estimates against real runs on this machine.

    python bench/estimate_accuracy.py                    # embedded model and two tiny models, CPU
    python bench/estimate_accuracy.py --cases embedded-sft,tiny --quiet-load 1.0   # wait for a quiet machine
    python bench/estimate_accuracy.py --memory-only      # the memory estimates alone: one run a case
    python bench/estimate_accuracy.py --qwen             # the Qwen1.5-1.8B recipe's estimate on an 80 GB GPU

Each case is a real run through the studio's service. Memory: the fit line's estimate (the training split's
own lengths) against the worker's peak resident memory (VmHWM, read from /proc while it runs). Time: the
estimate after Measure speed (a few real steps, at most 30 s) against the run's duration (attempt start to its
finished event); then the same setup with twice the steps, estimated from the first run (the last comparable
run on this machine), against its duration. Numbers are printed, never asserted; other work on the machine
slows runs and measurements unevenly, so each timed line prints the load average (`--quiet-load` waits for a
quiet machine before each pair).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from memory_estimate_check import peak_rss_mib  # noqa: E402
from throughput_sides import QWEN15_18B  # noqa: E402

from studio.api import Studio  # noqa: E402
from studio.config import EMBEDDED_MODEL, RunConfig  # noqa: E402
from studio.config.recipes import recipe_for, with_recipe  # noqa: E402
from studio.control.device_lock import DeviceLocks  # noqa: E402
from studio.runs.events import AttemptStarted, Finished  # noqa: E402

MEMORY_STEPS = 100
SHORT = {"training.save_steps": "100000", "training.logging_steps": "2", "evaluation.watch_count": "3"}


@dataclass
class Case:
    name: str
    model: str  # EMBEDDED_MODEL, or "tiny:HIDDEN:LAYERS" (built here)
    stage: str = "sft"
    overrides: dict[str, str] = field(default_factory=dict)


CASES = [
    Case("embedded-sft", EMBEDDED_MODEL, overrides={"training.max_steps": "24", "training.eval_steps": "12"}),
    Case(
        "embedded-sft-padded",
        EMBEDDED_MODEL,
        overrides={
            "training.packing": "false",
            "training.batch_size": "4",
            "training.gradient_accumulation_steps": "1",
            "training.max_steps": "24",
            "training.eval_steps": "12",
        },
    ),
    Case("embedded-dpo", EMBEDDED_MODEL, "dpo", {"training.max_steps": "12", "training.eval_steps": "6"}),
    Case("tiny", "tiny:64:2", overrides={"training.max_steps": "200", "training.eval_steps": "100"}),
    Case("tiny-wide", "tiny:512:4", overrides={"training.max_steps": "60", "training.eval_steps": "30"}),
]


def model_path(spec: str, folder: Path) -> str:
    if not spec.startswith("tiny:"):
        return spec
    from studio.dev.tiny_models import build_tiny_model

    _, hidden, layers = spec.split(":")
    target = folder / f"tiny-{hidden}-{layers}"
    return str(target if target.exists() else build_tiny_model(target, hidden=int(hidden), layers=int(layers)))


def config_of(case: Case, model: str) -> RunConfig:
    base = RunConfig().with_overrides({"model.name_or_path": model, "training.stage": case.stage})
    recipe = recipe_for(EMBEDDED_MODEL, case.stage, any_model=True)
    if recipe is not None:
        base = with_recipe(base, recipe).with_overrides({"model.name_or_path": model})
    return base.with_overrides({"name": case.name, **SHORT, **case.overrides})


def run(studio: Studio, config: RunConfig) -> tuple[float, float, str]:
    """(peak RSS in MiB, seconds from attempt start to finished, how it ended)."""
    run_id = studio.start(config)
    peak = 0.0
    while (status := studio.status(run_id)).state not in ("finished", "failed", "aborted"):
        if status.pid:
            peak = max(peak, peak_rss_mib(status.pid) or 0.0)
        time.sleep(0.3)
    events, _ = studio.events(run_id)
    begun = next(e.time for e in events if isinstance(e, AttemptStarted))
    ended = next((e.time for e in events if isinstance(e, Finished)), time.time())
    return peak, ended - begun, status.state


def report_case(studio: Studio, case: Case, model: str, timed: bool, quiet_load: float | None) -> None:
    config = config_of(case, model)
    if not timed:  # long enough for the allocator's resident size to level off (~50 steps on a CPU)
        steps = max(config.training.max_steps or 0, MEMORY_STEPS)
        config = config.with_overrides({"training.max_steps": str(steps), "training.eval_steps": str(steps // 2)})
    estimated_mib = studio.fit(config).estimate.total_gib * 1024
    if not timed:
        peak, _, ended = run(studio, config)
        print(f"{case.name:22} {_memory(estimated_mib, peak)} ({ended})", flush=True)
        return
    wait_for_quiet(quiet_load)
    measured = studio.measure_speed(config)
    peak, took, ended = run(studio, config)
    print(
        f"{case.name:22} {_memory(estimated_mib, peak)} | time (measured {measured.rate.tokens_per_second:6.0f} "
        f"tok/s) {measured.seconds:6.1f} s est / {took:6.1f} s real = {took / measured.seconds:4.2f}x ({ended}, "
        f"{measured.steps} steps, {measured.evaluations} evals) load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    longer = config.with_overrides({"training.max_steps": str(2 * measured.steps)})
    wait_for_quiet(quiet_load)
    from_run = studio.time_estimate(longer)  # the run above is now the newest comparable one
    peak2, took2, ended2 = run(studio, longer)
    print(
        f"{case.name + ' x2':22} {_memory(estimated_mib, peak2)} | time (from the run, "
        f"{from_run.rate.tokens_per_second:6.0f} tok/s) {from_run.seconds:6.1f} s est / {took2:6.1f} s real = "
        f"{took2 / from_run.seconds:4.2f}x ({ended2}, {from_run.steps} steps) load {os.getloadavg()[0]:.1f}",
        flush=True,
    )


def _memory(estimated_mib: float, peak: float) -> str:
    return f"memory {estimated_mib:6.0f} MiB est / {peak:6.0f} MiB peak = {peak / estimated_mib:4.2f}x"


def wait_for_quiet(load: float | None, poll_s: float = 15.0) -> None:
    """On a machine others share: wait until the 1-minute load average is below `load` (None: do not wait)."""
    while load is not None and os.getloadavg()[0] > load:
        time.sleep(poll_s)


# Qwen1.5-1.8B's config.json (the tutorial's model, as the throughput bench builds it): the estimator needs no
# weights, so no download
QWEN_1_8B = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", **QWEN15_18B}
# the variants measured on an H100 80GB (docs/benchmarks.md, 2026-11-23): fields over the recipe
QWEN_VARIANTS = {
    "recipe (auto: dequantised copies, checkpointing)": {},
    "4-bit kept, checkpointing (eager)": {"quantization.cache_dequantized": "off"},
    "4-bit kept, no checkpointing (eager)": {
        "quantization.cache_dequantized": "off",
        "training.gradient_checkpointing": "off",
    },
    "dequantised copies, no checkpointing": {"training.gradient_checkpointing": "off"},
}


def qwen_recipe() -> None:
    """The estimator's memory for examples/qwen1.5-1.8b-chat-qlora.yaml on an 80 GB GPU, beside the figures
    measured there (printed by hand in docs/benchmarks.md; no GPU is needed here)."""
    import json

    from studio.memory_estimate import estimate_memory

    recipe = RunConfig.from_yaml(HERE.parent / "examples" / "qwen1.5-1.8b-chat-qlora.yaml")
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "config.json").write_text(json.dumps(QWEN_1_8B))
        for name, changes in QWEN_VARIANTS.items():
            config = recipe.with_overrides(changes) if changes else recipe
            estimate = estimate_memory(config, Path(folder), device="cuda", processes=1, gpu_gib=81559 / 1024)
            counted = (estimate.total_gib - estimate.overhead_gib) * 1024
            print(f"{name:50} {counted:6.0f} MiB counted + {estimate.overhead_gib * 1024:.0f} MiB CUDA context")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default=",".join(case.name for case in CASES))
    parser.add_argument("--qwen", action="store_true", help="only the Qwen1.5-1.8B recipe's estimate (no runs)")
    parser.add_argument("--memory-only", action="store_true", help="one run a case, no speed measurement")
    parser.add_argument(
        "--quiet-load", type=float, help="before each timed pair, wait for the 1-minute load average to fall below this"
    )
    args = parser.parse_args()
    if args.qwen:
        qwen_recipe()
        return
    wanted = args.cases.split(",")
    print(f"load average at start: {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        studio = Studio(root / "runs", locks=DeviceLocks(root / "locks"))
        for case in (case for case in CASES if case.name in wanted):
            report_case(studio, case, model_path(case.model, root), not args.memory_only, args.quiet_load)
    print(f"load average at end: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
