"""Time from pressing Start to the first loss point, through the same service the studio's Start button calls.

    python bench/time_to_first_loss.py --repeats 3

Starts the embedded default (or --config YAML) with logging every step, waits for the first
`step` event, aborts, and prints the wall time of each phase as the worker reported it.
Run it with a warm model cache (a first run converts the embedded model once).
Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from studio.config import RunConfig
from studio.control.device_lock import DeviceLocks
from studio.control.service import TrainingService


def measure(config: RunConfig, runs_dir: Path) -> dict:
    service = TrainingService(runs_dir, locks=DeviceLocks(runs_dir / "locks"))
    pressed = time.time()
    run_id = service.start(config)
    spawned = time.time()
    marks, offset = [("start() returned", spawned - pressed)], 0
    while True:
        events, offset = service.read_events(run_id, offset)
        for event in events:
            label = getattr(event, "message", None) or event.type
            marks.append((f"{event.type}: {label[:60]}", event.time - pressed))
            if event.type == "step":
                service.abort(run_id)
                service.wait(run_id, timeout=120)
                return {"first_loss_s": event.time - pressed, "marks": marks}
            if event.type in ("failed", "finished", "aborted"):
                raise SystemExit(f"run ended before a loss point: {label}")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="run config YAML (default: the studio defaults = embedded model, demo data)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one machine-readable line last")
    args = parser.parse_args()
    config = RunConfig.from_yaml(args.config) if args.config else RunConfig()
    config = config.with_overrides({"name": "first-loss", "training.logging_steps": "1"})
    results = []
    with tempfile.TemporaryDirectory() as runs:
        for repeat in range(args.repeats):
            result = measure(config, Path(runs))
            results.append(result)
            print(f"repeat {repeat + 1}: first loss point {result['first_loss_s']:.1f} s after Start")
            for label, seconds in result["marks"]:
                print(f"    {seconds:6.2f} s  {label}")
    times = [r["first_loss_s"] for r in results]
    print(
        f"\nStart -> first loss point: median {statistics.median(times):.1f} s, best {min(times):.1f} s over "
        f"{len(times)} runs"
    )
    if args.json:
        print(json.dumps({"first_loss_s": times, "median_s": statistics.median(times)}))


if __name__ == "__main__":
    main()
