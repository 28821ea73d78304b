"""Where a sweep is recorded: in its runs' folders, which stay the truth.

    RUN_DIR/sweep.json   {"sweep_id": ..., "index": 0, "total": 4, "axes": [...], "varied": {...}, ...}

Each run of a sweep carries its sweep's id, its place in it and the values it varies, written when its folder is
created (before its worker starts). A sweep is the runs that name it: found again by reading the runs folder,
after a restart too; a run folder that is deleted leaves its sweep.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ValidationError

from studio.sweeps.spec import METRIC_DEFAULT, SweepError

SWEEP_FILE = "sweep.json"


class SweepMark(BaseModel):
    sweep_id: str
    index: int  # the run's place in the sweep (and in the queue)
    total: int  # runs the sweep planned
    axes: list[str]  # the fields the sweep varies, in order
    varied: dict[str, str]  # field path -> this run's value, as written
    mode: str = "grid"
    metric: str = METRIC_DEFAULT
    created: float = 0.0  # when the sweep was queued: the same in each of its runs


@dataclass
class SweepInfo:
    sweep_id: str
    axes: list[str]
    metric: str
    mode: str
    total: int  # runs planned; fewer are found when some folders were deleted
    created: float
    runs: list[str] = field(default_factory=list)  # run ids, in the sweep's order
    varied: dict[str, dict[str, str]] = field(default_factory=dict)  # run id -> field path -> value


def write_mark(run_dir: Path, mark: SweepMark) -> None:
    (Path(run_dir) / SWEEP_FILE).write_text(mark.model_dump_json(indent=1), encoding="utf-8")


def read_mark(run_dir: Path) -> SweepMark | None:
    """The run's sweep mark; None for a run of no sweep, or one whose mark is unreadable (it is then no member)."""
    try:
        return SweepMark.model_validate_json((Path(run_dir) / SWEEP_FILE).read_bytes())
    except (OSError, ValidationError, ValueError):
        return None


def find_sweeps(runs_dir: Path) -> list[SweepInfo]:
    """Every sweep with a run in the folder, newest first."""
    found: dict[str, SweepInfo] = {}
    places: dict[str, dict[str, int]] = {}
    runs_dir = Path(runs_dir)
    for path in sorted(runs_dir.glob(f"*/{SWEEP_FILE}")) if runs_dir.is_dir() else []:
        mark = read_mark(path.parent)
        if mark is None:
            continue
        info = found.setdefault(
            mark.sweep_id, SweepInfo(mark.sweep_id, mark.axes, mark.metric, mark.mode, mark.total, mark.created)
        )
        info.varied[path.parent.name] = mark.varied
        places.setdefault(mark.sweep_id, {})[path.parent.name] = mark.index
    for sweep_id, info in found.items():
        info.runs = sorted(places[sweep_id], key=lambda run: (places[sweep_id][run], run))
    return sorted(found.values(), key=lambda info: (info.created, info.sweep_id), reverse=True)


def find_sweep(runs_dir: Path, sweep_id: str) -> SweepInfo:
    for info in find_sweeps(runs_dir):
        if info.sweep_id == sweep_id:
            return info
    raise SweepError("sweeps.not_found", sweep_id=sweep_id, runs_dir=runs_dir)


def new_sweep_id(runs_dir: Path, prefix: str) -> str:
    """PREFIX-sweep-DATE-TIME, unused in the runs folder."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    taken = {info.sweep_id for info in find_sweeps(runs_dir)}
    sweep_id, n = f"{prefix[:60]}-sweep-{stamp}", 1
    while sweep_id in taken:
        n += 1
        sweep_id = f"{prefix[:60]}-sweep-{stamp}-{n}"
    return sweep_id
