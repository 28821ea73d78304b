"""One bench script run from two trees of the studio, alternating A B A B, and the ratio of their speeds.

    git worktree add /tmp/before HEAD
    python bench/tree_ab.py --before /tmp/before --rounds 2 -- \\
        bench/train_throughput.py --model embedded --steps 3 --rounds 1 --sides ours --json

For a change meant to keep the speed (a refactor): the same bench, the same machine, the same minutes, the
tree before the change (`--before`, e.g. a git worktree of the last commit) and this tree. The script path is
taken relative to each tree, and each tree's `studio` is put first on the import path, so each side runs its
own code. The bench must print, as its last line, JSON with `best: {side: {tokens_per_s, peak_rss_mib}}`
(train_throughput.py and dpo_throughput.py do with --json). Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE_TREE = Path(__file__).resolve().parent.parent


def run_in(tree: Path, command: list[str]) -> dict:
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")])))
    script = [sys.executable, str(tree / command[0]), *command[1:]]
    done = subprocess.run(script, cwd=tree, env=environment, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{tree}: exit {done.returncode}\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])["best"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="the other tree (e.g. a worktree of HEAD)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- SCRIPT ARGS (SCRIPT relative to each tree)")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    trees = {"before": args.before.resolve(), "after": HERE_TREE}
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    for round_index in range(args.rounds):
        for name, tree in trees.items():
            best = run_in(tree, command)
            runs[name].append(best)
            for side, r in best.items():
                print(
                    f"round {round_index + 1} {name:6} {side:12} {r['tokens_per_s']:8.1f} tok/s  "
                    f"peak RSS {r['peak_rss_mib']} MiB",
                    flush=True,
                )
    for side in runs["after"][0]:
        fastest = {name: max(r[side]["tokens_per_s"] for r in rounds) for name, rounds in runs.items()}
        memory = {name: min(r[side]["peak_rss_mib"] for r in rounds) for name, rounds in runs.items()}
        print(
            f"{side}: after/before {fastest['after'] / fastest['before']:.3f}x tok/s (best of {args.rounds} each: "
            f"{fastest['after']:.1f} vs {fastest['before']:.1f}), {memory['after'] / memory['before']:.3f}x peak RSS"
        )


if __name__ == "__main__":
    main()
