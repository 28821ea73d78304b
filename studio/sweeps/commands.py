"""`qlora-studio sweep` and `qlora-studio sweeps`: a sweep from the terminal, through the same front door as the page.

    qlora-studio sweep my.yaml --set training.learning_rate=1e-4,2e-4 --set lora.rank=8,16          # a 2x2 grid
    qlora-studio sweep my.yaml --set training.learning_rate=1e-5..1e-3:log --random 6 --seed 0      # 6 draws
    qlora-studio sweeps                       # every sweep;  sweeps ID: its ranking;  --wait, --cancel

`sweep` prints the planned runs (and stops there with --dry-run), queues them, then keeps the queue and waits for
them to end and prints their ranking, unless --detach.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from studio.locales import cli_language, in_language
from studio.sweeps.spec import MAX_RUNS, METRIC_DEFAULT, SweepSpec

if TYPE_CHECKING:
    from studio.api import Studio
    from studio.config import RunConfig

POLL_S = 2.0


def add_sweep_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="YAML config every run starts from (flags override its values)")
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUES",
        help="a field and the values to try, comma-separated (training.learning_rate=1e-4,2e-4), or a range "
        "low..high, :log for a log scale (random sweeps only); repeat for each field. A single value sets the "
        "field for every run",
    )
    parser.add_argument("--random", type=int, metavar="COUNT", help=f"draw COUNT runs (at most {MAX_RUNS}) at random")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random draws: the same seed, the same runs")
    _metric_flag(parser)
    parser.add_argument("--dry-run", action="store_true", help="print the planned runs and queue nothing")
    parser.add_argument("--detach", action="store_true", help="queue the runs and return without waiting for them")
    parser.add_argument("--runs-dir", help="folder of run folders (default: training.output_dir)")


def add_sweeps_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_id", nargs="?", help="the sweep to rank (default: list every sweep)")
    parser.add_argument("--runs-dir", default="runs", help="folder of run folders")
    parser.add_argument("--metric", help="rank by this metric (default: the one the sweep was queued with)")
    parser.add_argument("--wait", action="store_true", help="keep the queue until the sweep's runs end, then rank")
    parser.add_argument("--cancel", action="store_true", help="take the sweep's queued runs out of the queue")
    parser.add_argument(
        "--abort-running", action="store_true", help="with --cancel: also checkpoint and stop the run training now"
    )


def _metric_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metric",
        default=METRIC_DEFAULT,
        help="what ranks the runs: best_eval_loss, final_train_loss, or an evaluation's bleu-4, rouge-l, ... "
        "(losses lowest first, the others highest first)",
    )


def run_sweep(studio: Studio, config: RunConfig, args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    mode = "random" if args.random else "grid"
    spec = SweepSpec.from_sets(args.sets, mode, args.random or 1, args.seed, args.metric)
    plan = studio.plan_sweep(config, spec)
    out(f"{len(plan.runs)} runs ({mode}):")
    out(columns_text(plan.table()))
    if args.dry_run:
        out("Dry run: nothing was queued.")
        return 0
    sweep_id = studio.start_sweep(plan)
    out(f"Queued sweep {sweep_id} in {studio.runs_dir}; they run one at a time per device, in this order.")
    if args.detach:
        out(f"Queued runs start while a web server or `qlora-studio sweeps {sweep_id} --wait` keeps the queue.")
        return 0
    return wait_and_rank(studio, sweep_id, args.metric, out)


def run_sweeps(studio: Studio, args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    if not args.sweep_id:
        sweeps = studio.sweeps()
        for info in sweeps:
            out(f"{info.sweep_id:50} {len(info.runs):>3} runs  {info.mode:6}  {', '.join(info.axes)}")
        if not sweeps:
            out(f"No sweeps in {studio.runs_dir}")
        return 0
    if args.cancel:
        out(in_language(studio.cancel_sweep(args.sweep_id, args.abort_running).message, cli_language()))
        return 0
    if args.wait:
        return wait_and_rank(studio, args.sweep_id, args.metric, out)
    print_ranking(studio, args.sweep_id, args.metric, out)
    return 0


def wait_and_rank(studio: Studio, sweep_id: str, metric: str | None, out: Callable[[str], None] = print) -> int:
    """Keep the queue until every run of the sweep has ended, saying each end; then the ranking. 0 when every run
    finished; Ctrl-C stops waiting (the runs go on), 130."""
    studio.service.keep_queue()
    said: set[str] = set()
    try:
        while True:
            ranking = studio.sweep_ranking(sweep_id, metric)
            for run in ranking.runs:
                if run.state not in ("queued", "starting", "running") and run.run_id not in said:
                    said.add(run.run_id)
                    out(f"[{len(said)}/{len(ranking.runs)}] {run.run_id}: {run.state}")
            if not ranking.live:
                break
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        out(
            f"\nStopped waiting; the sweep goes on. `qlora-studio sweeps {sweep_id} --wait` waits again, "
            f"--cancel cancels its queued runs."
        )
        return 130
    print_ranking(studio, sweep_id, metric, out)
    return 0 if all(run.state == "finished" for run in ranking.runs) else 1


def print_ranking(studio: Studio, sweep_id: str, metric: str | None, out: Callable[[str], None] = print) -> None:
    ranking = studio.sweep_ranking(sweep_id, metric)
    order = "lowest" if ranking.lower_is_better else "highest"
    out(f"Sweep {sweep_id}, ranked by {ranking.metric} ({order} first):")
    table = [(name, [in_language(cell, cli_language()) for cell in cells]) for name, cells in ranking.table()]
    out(columns_text(table))
    others = [name for name in ranking.metrics if name != ranking.metric]
    if others:
        out(f"Other metrics (--metric): {', '.join(others)}")


def columns_text(columns: list[tuple[str, list[str]]]) -> str:
    """Columns as aligned text: a header line, then a line per row."""
    widths = [max([len(name), *(len(cell) for cell in cells)]) for name, cells in columns]
    rows = [[name for name, _ in columns], *zip(*(cells for _, cells in columns))]
    return "\n".join("  ".join(f"{cell:{w}}" for cell, w in zip(row, widths)).rstrip() for row in rows)
