"""Data-parallel scaling of the studio's own training: 1 process against N, same config and global batch.

Called by `python bench/train_throughput.py --devices N`. Each side is a real studio run (the
service, its worker or torchrun's workers) on the same examples; tokens/s is read from the
run's step events after the first step (start-up excluded). On a CPU the single process uses
every core and each of the N processes gets cores/N threads, so the numbers compare like with
like on a small machine; on a GPU machine the N processes use N GPUs. Printed, never asserted.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

from studio.config import RunConfig
from studio.control.device_lock import DeviceLocks
from studio.control.service import TrainingService


def _config(args, model_path: str, devices: str, strategy: str = "ddp") -> RunConfig:
    return RunConfig().with_overrides(
        {
            "name": f"scaling-{devices.replace(':', '').replace(',', '-')}-{strategy}",
            "distributed.strategy": strategy,
            "model.name_or_path": model_path,
            "quantization.method": args.quant,
            "finetuning.method": args.method,
            "finetuning.freeze_trainable_layers": str(args.freeze_layers),
            "training.precision": args.precision,
            "training.devices": devices,
            "training.max_steps": str(args.steps + 1),
            "training.batch_size": "8",
            "training.gradient_accumulation_steps": "2",
            "training.logging_steps": "1",
            "training.eval_steps": "100000",
            "training.save_steps": "100000",
            "data.val_size": "0",
        }
    )


def _measure(service: TrainingService, config: RunConfig) -> dict:
    run_id = service.start(config)
    status = service.wait(run_id, timeout=3600)
    if status.state != "finished":
        raise SystemExit(f"{config.training.devices}: the run {status.state}: {status.message}")
    steps = [e for e in service.read_events(run_id)[0] if e.type == "step"][1:]  # the first step pays start-up
    return {
        "tokens_per_second": statistics.fmean(s.tokens_per_second for s in steps),
        "loss": steps[-1].loss,
        "rss_mib": max(s.rss_mib or 0 for s in steps),
    }


def scaling(args, model_path: str) -> None:
    many = str(args.devices) if args.device == "cpu" else "cuda:" + ",".join(map(str, range(args.devices)))
    single = "cpu" if args.device == "cpu" else "cuda:0"
    with tempfile.TemporaryDirectory() as scratch:
        service = TrainingService(Path(scratch) / "runs", locks=DeviceLocks(Path(scratch) / "locks"))
        rows = []
        sides = [("1 process", single, "ddp")]
        sides += [(f"{args.devices} processes {strategy}", many, strategy) for strategy in args.strategies.split(",")]
        for round_index in range(args.rounds):
            for label, devices, strategy in sides:
                result = _measure(service, _config(args, model_path, devices, strategy))
                rows.append((round_index, label, result))
                print(
                    f"round {round_index}  {label:18}  {result['tokens_per_second']:8.1f} tokens/s  "
                    f"loss at the last step {result['loss']:.4f}  peak RSS of rank 0 {result['rss_mib']:.0f} MiB",
                    flush=True,
                )
    one = _mean(rows, "1 process", "tokens_per_second")
    one_rss = _mean(rows, "1 process", "rss_mib")
    for label, _, _ in sides[1:]:
        ratio = _mean(rows, label, "tokens_per_second") / one
        memory = f"; peak RSS of rank 0 {_mean(rows, label, 'rss_mib') / one_rss:.2f}x the single process's"
        if args.device == "cpu":  # the same cores on both sides: the ratio is the efficiency of splitting them
            print(f"\n{label} on the same cores / 1 process: {ratio:.2f}x tokens/s (1.00 = no loss){memory}")
        else:
            print(f"\n{label} / 1 GPU: {ratio:.2f}x tokens/s; scaling efficiency {ratio / args.devices:.0%}{memory}")
    if getattr(args, "json", False):  # each side's fastest round (bench/tree_ab.py reads it)
        best = {
            label: {
                "tokens_per_s": max(r["tokens_per_second"] for _, side, r in rows if side == label),
                "peak_rss_mib": round(max(r["rss_mib"] for _, side, r in rows if side == label)),
            }
            for label, _, _ in sides
        }
        print(json.dumps({"best": best}))


def _mean(rows: list, label: str, key: str) -> float:
    return statistics.fmean(result[key] for _, side, result in rows if side == label)
