"""The memory estimate (Preview command) against the worker's measured peak, for each stage's recipe.

    python bench/memory_estimate_check.py --steps 10            # embedded model, sft dpo kto pt recipes, CPU

Each stage trains its recipe (studio.config.recipes) for --steps steps through the studio's own
service, with an evaluation at the last step; the worker's peak resident memory (VmHWM, read from
/proc while it runs) is printed beside the estimate and their ratio. Numbers are printed, never
asserted. On a GPU the estimate counts GPU memory, which this script does not read.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from studio.api import Studio
from studio.config import EMBEDDED_MODEL, RunConfig
from studio.config.recipes import recipe_for, with_recipe
from studio.control.device_lock import DeviceLocks
from studio.control.devices import plan_devices
from studio.memory_estimate import estimate_memory, local_config_dir


def peak_rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def measure(studio: Studio, config: RunConfig) -> tuple[float, str]:
    """(peak RSS in MiB, how the run ended)."""
    run_id = studio.start(config)
    peak = 0.0
    while True:
        status = studio.status(run_id)
        if status.pid:
            peak = max(peak, peak_rss_mib(status.pid) or 0.0)
        if status.state in ("finished", "failed", "aborted"):
            return peak, status.state
        time.sleep(0.3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=EMBEDDED_MODEL)
    parser.add_argument("--stages", default="sft,dpo,kto,pt")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as runs:
        studio = Studio(Path(runs) / "runs", locks=DeviceLocks(Path(runs) / "locks"))
        print(f"{'stage':6} {'estimate':>10} {'measured':>10} {'measured/estimate':>18}  recipe")
        for stage in args.stages.split(","):
            recipe = recipe_for(args.model, stage, any_model=True)
            base = RunConfig().with_overrides({"model.name_or_path": args.model, "training.stage": stage})
            config = with_recipe(base, recipe).with_overrides(
                {
                    "name": f"memory-{stage}",
                    "training.max_steps": str(args.steps),
                    "training.eval_steps": str(args.steps),
                    "training.save_steps": "100000",
                }
            )
            plan = plan_devices(config)
            estimate = estimate_memory(
                config, local_config_dir(config.model), device=plan.kind, processes=plan.world_size
            )
            peak, ended = measure(studio, config)
            estimated_mib = estimate.total_gib * 1024
            print(
                f"{stage:6} {estimated_mib:8.0f} MiB {peak:8.0f} MiB {peak / estimated_mib:17.2f}x  "
                f"{recipe.file.name} ({ended}, {args.steps} steps)"
            )


if __name__ == "__main__":
    main()
