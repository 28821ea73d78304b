"""How a run's worker processes are launched, and what torchrun says when one of them fails.

One device: `python -m studio.worker RUN_DIR`. Several processes: PyTorch's own launcher,
`python -m torch.distributed.run ... -m studio.worker RUN_DIR`, which starts one worker per
device, sets each one's RANK/WORLD_SIZE/LOCAL_RANK, watches them, and stops them all when one
fails. On one machine it rendezvouses on a free local port (--standalone, so concurrent runs
never clash); across machines on distributed.master_addr:master_port.
"""

from __future__ import annotations

import re
import shlex
import sys

from studio.config import RunConfig
from studio.control.devices import DevicePlan


def worker_command(python: str, run_dir: str, devices: DevicePlan, config: RunConfig, node_rank: int = 0) -> list[str]:
    worker = ["-m", "studio.worker", run_dir]
    if not devices.distributed:
        return [python, *worker]
    launcher = [python, "-m", "torch.distributed.run", "--nproc-per-node", str(devices.processes)]
    if devices.nnodes == 1:
        return [*launcher, "--standalone", *worker]
    spread = config.distributed
    return [
        *launcher,
        "--nnodes",
        str(devices.nnodes),
        "--node-rank",
        str(node_rank),
        "--master-addr",
        spread.master_addr,
        "--master-port",
        str(spread.master_port),
        *worker,
    ]


def other_node_commands(
    config: RunConfig, devices: DevicePlan, run_dir: str = "RUN_DIR", python: str = sys.executable
) -> list[str]:
    """What to run on each other machine (nodes 1..N-1) for a multi-node run, as shell lines.

    Each machine needs the studio installed at the same path (`python` is the interpreter of its environment, named
    in full: a bare `python` is whatever the shell finds first), the model and data at the same paths, and the run
    folder (its config.yaml and status.json) at `run_dir`, e.g. on a shared file system."""
    lines = []
    for node in range(1, devices.nnodes):
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in devices.environment().items() if v)
        command = shlex.join(worker_command(python, run_dir, devices, config, node_rank=node))
        lines.append(f"# node {node}\n{(env + ' ') if env else ''}{command}")
    return lines


_ROOT_CAUSE = re.compile(
    r"Root Cause \(first observed failure\):.*?host\s*:\s*(?P<host>\S+).*?rank\s*:\s*(?P<rank>\d+)"
    r"\s*\(local_rank:\s*(?P<local>\d+)\).*?exitcode\s*:\s*(?P<code>-?\d+)\s*\(pid:\s*(?P<pid>\d+)\)",
    re.S,
)


def rank_failure(log_text: str) -> str | None:
    """torchrun's 'first observed failure' in words: which rank, on which host, how it ended; None if absent."""
    summaries = list(_ROOT_CAUSE.finditer(log_text))
    if not summaries:
        return None
    found = summaries[-1]  # the last summary belongs to the latest attempt
    code = int(found["code"])
    if code < 0:
        import signal

        how = f"was killed by {signal.Signals(-code).name}"
    else:
        how = f"exited with code {code}"
    return (
        f"Rank {found['rank']} (local rank {found['local']}, pid {found['pid']} on {found['host']}) {how}; "
        "torchrun stopped the other ranks, so the whole run failed. See worker.log for that rank's output."
    )
