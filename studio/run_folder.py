"""A run folder is the truth about a run: config, events, status, checkpoints, adapter, log.

    RUN_DIR/config.yaml         the RunConfig the worker trains with
    RUN_DIR/events.jsonl        append-only protocol (studio.events)
    RUN_DIR/status.json         latest state, replaced atomically
    RUN_DIR/worker.log          the worker's stdout and stderr
    RUN_DIR/checkpoints/        resumable checkpoints, checkpoint-STEP/
    RUN_DIR/adapter/            the final PEFT adapter and tokenizer
    RUN_DIR/val.jsonl           the validation conversations, for later evaluation
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from studio.config import RunConfig
from studio.events import TERMINAL, Event, dump_event, parse_event

RunState = Literal["starting", "running", "finished", "failed", "aborted"]
FINAL_STATES = ("finished", "failed", "aborted")


class RunStatus(BaseModel):
    run_id: str
    state: RunState
    pid: int | None = None
    pid_started: float | None = None  # process start time, so a recycled pid is not mistaken for the worker
    attempt: int = 1
    device: str | None = None
    step: int = 0
    total_steps: int | None = None
    message: str = ""
    updated: float = 0.0


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    @property
    def run_id(self) -> str:
        return self.path.name

    config_file = property(lambda self: self.path / "config.yaml")
    events_file = property(lambda self: self.path / "events.jsonl")
    status_file = property(lambda self: self.path / "status.json")
    log_file = property(lambda self: self.path / "worker.log")
    checkpoints_dir = property(lambda self: self.path / "checkpoints")
    adapter_dir = property(lambda self: self.path / "adapter")
    val_file = property(lambda self: self.path / "val.jsonl")

    def exists(self) -> bool:
        return self.config_file.is_file()

    def load_config(self) -> RunConfig:
        return RunConfig.from_yaml(self.config_file)

    def append(self, event: Event) -> None:
        line = dump_event(event).encode("utf-8")
        with self._lock:  # the GPU sampler thread writes too
            fd = os.open(self.events_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)  # one write per line: readers never see half a line from us
            finally:
                os.close(fd)

    def read_events(self, offset: int = 0) -> tuple[list[Event], int]:
        """Complete events written after byte `offset`, and the offset to pass next time."""
        try:
            with open(self.events_file, "rb") as handle:
                handle.seek(offset)
                data = handle.read()
        except FileNotFoundError:
            return [], offset
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next read
        events = [parse_event(line) for line in data[:end].splitlines() if line.strip()]
        return events, offset + end

    def last_attempt_ended(self) -> bool:
        """Whether the latest attempt already has its terminal event."""
        events, _ = self.read_events()
        for event in reversed(events):
            if isinstance(event, TERMINAL):
                return True
            if event.type == "started" or event.type == "phase" and event.name == "loading_model":
                return False
        return False

    def read_status(self) -> RunStatus | None:
        try:
            return RunStatus.model_validate_json(self.status_file.read_text())
        except (FileNotFoundError, ValueError):
            return None

    def write_status(self, status: RunStatus) -> None:
        status.updated = time.time()
        temporary = self.status_file.with_suffix(f".tmp-{os.getpid()}-{threading.get_ident()}")
        temporary.write_text(status.model_dump_json(indent=2))
        os.replace(temporary, self.status_file)

    def latest_checkpoint(self) -> Path | None:
        checkpoints = sorted(
            (p for p in self.checkpoints_dir.glob("checkpoint-*") if (p / "state.json").is_file()),
            key=lambda p: int(p.name.rsplit("-", 1)[1]),
        )
        return checkpoints[-1] if checkpoints else None

    def log_tail(self, max_chars: int = 4000) -> str:
        try:
            with open(self.log_file, "rb") as handle:
                handle.seek(max(0, self.log_file.stat().st_size - max_chars))
                return handle.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def write_json(self, name: str, value: object) -> None:
        (self.path / name).write_text(json.dumps(value, ensure_ascii=False, indent=2))
