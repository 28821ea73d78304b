"""A run folder is the truth about a run: config, events, status, checkpoints, adapter, log.

    RUN_DIR/config.yaml         the RunConfig the user chose, exactly
    RUN_DIR/events.jsonl        append-only protocol (studio.runs.events)
    RUN_DIR/status.json         latest state and runtime facts (pid, attempt, checkpoint resumed from)
    RUN_DIR/worker.log          the worker's stdout and stderr
    RUN_DIR/checkpoints/        resumable checkpoints, checkpoint-STEP/
    RUN_DIR/adapter/            the final PEFT adapter and tokenizer (lora, oft)
    RUN_DIR/model/              instead, a full or freeze run's whole model and tokenizer
    RUN_DIR/val.jsonl           the validation conversations, for later evaluation
    RUN_DIR/sweep.json          for a run of a sweep: the sweep and the values it varies (studio/sweeps/record.py)

Writers never leave half a line or half a file behind: an event that cannot be written
whole (disk full, file-size limit) is cut back out, and status.json is replaced atomically.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from studio.config import RunConfig
from studio.errors import StudioError
from studio.runs.events import TERMINAL, AttemptStarted, Event, Failed, Log, dump_event, parse_event

RunState = Literal["queued", "starting", "running", "finished", "failed", "aborted", "cancelled", "unreadable"]
FINAL_STATES = ("finished", "failed", "aborted", "cancelled")  # cancelled: left the queue without ever starting
ENDED_STATES = FINAL_STATES + ("unreadable",)  # nothing more will happen without the user
CHECKPOINT_STATE = "state.json"  # written last into a checkpoint: its presence marks a complete one
RESERVE_BYTES = 64 * 1024  # a failed event with its traceback and a status.json, several times over


class RunUnreadable(StudioError):
    """A run folder whose files cannot be read; the message names the file and why."""


class RunStatus(BaseModel):
    run_id: str
    state: RunState
    pid: int | None = None
    pid_started: float | None = None  # process start time, so a recycled pid is not mistaken for the worker
    attempt: int = 1
    device: str | None = None
    step: int = 0
    total_steps: int | None = None
    resume_from: str | None = None  # the checkpoint the current attempt continues from
    processes: int = 1  # worker processes on this machine (torchrun's ranks); pid is then torchrun's
    queued_at: float | None = None  # when a queued run joined the queue (its order)
    queue_position: int | None = None  # filled in when read, never stored
    message: str = ""
    updated: float = 0.0


def checkpoint_step(path: Path) -> int:
    return int(Path(path).name.rsplit("-", 1)[1])


def list_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints in `folder`, newest first."""
    found = [
        p
        for p in Path(folder).glob("checkpoint-*")
        if p.name.rsplit("-", 1)[1].isdigit() and (p / CHECKPOINT_STATE).is_file()
    ]
    return sorted(found, key=checkpoint_step, reverse=True)


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        # told of each event just before it is written (the worker's tracker relay), so what they append lands first
        self.listeners: list[Callable[[Event], None]] = []

    @property
    def run_id(self) -> str:
        return self.path.name

    config_file = property(lambda self: self.path / "config.yaml")
    events_file = property(lambda self: self.path / "events.jsonl")
    status_file = property(lambda self: self.path / "status.json")
    log_file = property(lambda self: self.path / "worker.log")
    checkpoints_dir = property(lambda self: self.path / "checkpoints")
    adapter_dir = property(lambda self: self.path / "adapter")
    model_dir = property(lambda self: self.path / "model")  # a full or freeze run's whole model
    initial_adapter_dir = property(lambda self: self.path / "initial_adapter")  # a PiSSA/OLoRA adapter's start
    val_file = property(lambda self: self.path / "val.jsonl")
    reserve_file = property(lambda self: self.path / ".reserve")
    # an abort was asked for this attempt: whichever service sees the worker end without a word calls it aborted
    abort_file = property(lambda self: self.path / ".abort-requested")

    def exists(self) -> bool:
        return self.config_file.is_file()

    def load_config(self) -> RunConfig:
        return RunConfig.from_yaml(self.config_file)

    # -- events -------------------------------------------------------------------------

    def append(self, event: Event) -> None:
        for listener in self.listeners:
            listener(event)
        line = dump_event(event).encode("utf-8")
        with self._lock:  # the GPU sampler thread writes too
            fd = os.open(self.events_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                try:
                    _write_all(fd, line)
                except OSError:
                    _truncate_quietly(fd, size)  # readers must never meet half an event
                    raise
            finally:
                os.close(fd)

    def repair_tail(self) -> None:
        """Cut an incomplete last line (its writer is dead) so that the next event starts on its own line."""
        try:
            with open(self.events_file, "rb+") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(0, size - 65536))
                tail = handle.read()
                if tail and not tail.endswith(b"\n"):
                    handle.truncate(size - len(tail) + tail.rfind(b"\n") + 1)
        except FileNotFoundError:
            pass

    def read_events(self, offset: int = 0) -> tuple[list[Event], int]:
        """Complete events written after byte `offset`, and the offset to pass next time.

        A damaged line becomes a warning in the log instead of breaking every reader of the run.
        """
        try:
            with open(self.events_file, "rb") as handle:
                handle.seek(offset)
                data = handle.read()
        except FileNotFoundError:
            return [], offset
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next read
        events: list[Event] = []
        for line in data[:end].splitlines():
            if line.strip():
                events.append(_parse_or_warn(line))
        return events, offset + end

    def last_terminal(self) -> Event | None:
        """The terminal event of the latest attempt, None while it has none."""
        events, _ = self.read_events()
        for event in reversed(events):
            if isinstance(event, TERMINAL):
                return event
            if isinstance(event, AttemptStarted):
                return None
        return None

    def last_attempt_ended(self) -> bool:
        return self.last_terminal() is not None

    # -- status -------------------------------------------------------------------------

    def read_status(self) -> RunStatus | None:
        """The status, None when there is none yet; RunUnreadable when the file is damaged or unreadable."""
        try:
            return RunStatus.model_validate_json(self.status_file.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValidationError) as error:
            raise RunUnreadable("runs.status_unreadable", file=self.status_file, error=_first_line(error)) from None

    def write_status(self, status: RunStatus) -> None:
        status.updated = time.time()
        temporary = self.status_file.with_suffix(f".tmp-{os.getpid()}-{threading.get_ident()}")
        try:
            temporary.write_text(status.model_dump_json(indent=2))
            os.replace(temporary, self.status_file)
        except OSError:
            temporary.unlink(missing_ok=True)
            raise

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Serialise processes that decide the run's end. Locks the folder itself: no file has to be created."""
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- space kept for the last words ---------------------------------------------------

    def reserve_space(self) -> None:
        """Hold a little disk space, so that a run that fills the disk can still record why it failed."""
        try:
            with open(self.reserve_file, "wb") as handle:
                handle.write(b"\0" * RESERVE_BYTES)
        except OSError:
            self.release_reserve()

    def release_reserve(self) -> None:
        try:
            self.reserve_file.unlink(missing_ok=True)
        except OSError:
            pass

    # -- checkpoints and log -------------------------------------------------------------

    def checkpoints(self) -> list[Path]:
        return list_checkpoints(self.checkpoints_dir)

    def latest_checkpoint(self) -> Path | None:
        found = self.checkpoints()
        return found[0] if found else None

    def log_tail(self, max_chars: int = 4000) -> str:
        try:
            with open(self.log_file, "rb") as handle:
                handle.seek(max(0, self.log_file.stat().st_size - max_chars))
                return handle.read().decode("utf-8", errors="replace")
        except OSError:
            return ""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _truncate_quietly(fd: int, size: int) -> None:
    try:
        os.ftruncate(fd, size)
    except OSError:
        pass


def _parse_or_warn(line: bytes) -> Event:
    try:
        return parse_event(line)
    except ValueError as error:  # pydantic's ValidationError is a ValueError
        return Log(level="warning", message=f"A damaged line in events.jsonl was skipped ({_first_line(error)}).")


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# How a worker's attempt ends, as both processes read it: the worker exits with WRITE_FAILED_EXIT + errno when
# even its last event could not be written, and the supervisor reads the OS error back from that code.
WRITE_FAILED_EXIT = 100


def end_message(event: Event) -> str:
    """What status.json says about an attempt that ended with `event`."""
    said = {"finished": "finished", "aborted": "aborted by request"}.get(event.type)
    return said or (event.error if isinstance(event, Failed) else event.type)


def write_failure_exit_code(error: OSError) -> int:
    return WRITE_FAILED_EXIT + min(error.errno or errno.EIO, 99)


# a plain folder name: never a path out of the runs folder
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
