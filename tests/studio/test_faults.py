"""Faults with real processes: a full disk, a file-size limit, a kill mid-write, damaged and planted checkpoints,
broken run folders. Each ends cleanly: a complete event log, a consistent status, nothing half-made, no hang."""

import json
import os
import pickle
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from studio.control.device_lock import DeviceLocks
from studio.control.service import TrainingService
from studio.errors import CheckpointError
from studio.runs.events import TERMINAL, parse_event
from tests.support import wait_for

LONG = {"training.max_steps": "100000", "training.eval_steps": "100000", "training.save_steps": "100000"}


def _cli_train(runs: Path, model: Path, cache: Path, *extra: str, **popen) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "studio.cli",
        "train",
        "--runs-dir",
        str(runs),
        "--model.name_or_path",
        str(model),
        "--quantization.method",
        "none",
        "--data.max_samples",
        "20",
        "--training.logging_steps",
        "1",
        *[arg for key, value in LONG.items() for arg in (f"--{key}", value)],
        *extra,
    ]
    env = {**os.environ, "QLORA_STUDIO_CACHE": str(cache)}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **popen)


def _only_run(runs: Path) -> Path:
    return wait_for(
        lambda: next((p for p in runs.glob("*") if (p / "config.yaml").is_file()), None), timeout=120, what="run folder"
    )


def _steps_written(run: Path) -> int:
    try:
        return sum(1 for line in (run / "events.jsonl").read_bytes().splitlines() if b'"type":"step"' in line)
    except FileNotFoundError:
        return 0


def _assert_clean_end(run: Path, error_text: str) -> None:
    """Every line a whole event, exactly one terminal event (failed), a status that says failed, no half-made folder."""
    data = (run / "events.jsonl").read_bytes()
    assert data.endswith(b"\n")
    events = [parse_event(line) for line in data.splitlines()]
    terminals = [e for e in events if isinstance(e, TERMINAL)]
    assert len(terminals) <= 1 and all(e.type == "failed" for e in terminals)
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "failed" and error_text in status["message"]
    assert not [p for p in run.rglob("*") if ".partial" in p.name]


def _finish(process: subprocess.Popen, timeout: float) -> tuple[int, str, str, float]:
    started = time.time()
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err, time.time() - started


def test_a_disk_that_fills_up_ends_the_run_failed_within_seconds(tmp_path, tiny_model_dir):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root; the file-size-limit test covers the same path")
    try:
        process = _cli_train(disk / "runs", tiny_model_dir, tmp_path / "cache")
        run = _only_run(disk / "runs")
        wait_for(lambda: _steps_written(run) >= 2, timeout=180, what="two steps")
        with open(disk / "filler", "wb") as filler:  # take every byte left
            try:
                while True:
                    filler.write(b"\0" * 65536)
                    filler.flush()
            except OSError:
                pass
        code, out, err, seconds = _finish(process, timeout=60)
        assert code != 0 and seconds < 30 and "Traceback" not in err
        assert "No space left on device" in out
        _assert_clean_end(run, "No space left on device")
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_file_size_limit_ends_the_run_failed_and_the_terminal_exits(tmp_path, tiny_model_dir):
    limit = 24 * 1024  # events.jsonl reaches it after some steps; every other file stays below it

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    process = _cli_train(tmp_path / "runs", tiny_model_dir, tmp_path / "cache", preexec_fn=limit_file_size)
    code, out, err, _ = _finish(process, timeout=300)
    run = _only_run(tmp_path / "runs")
    assert code != 0 and "Traceback" not in err
    assert "File too large" in out  # said by whoever could still say it: the worker's event or the service
    data = (run / "events.jsonl").read_bytes()
    assert data.endswith(b"\n") and len(data) <= limit
    assert all(parse_event(line) for line in data.splitlines())
    assert json.loads((run / "status.json").read_text())["state"] == "failed"


def test_a_worker_killed_mid_write_leaves_a_readable_log(service, tiny_config):
    run_id = service.start(tiny_config(**LONG))
    folder = service.folder(run_id)
    wait_for(lambda: _steps_written(folder.path) >= 2, timeout=180, what="two steps")
    pid = service.status(run_id).pid
    os.kill(pid, signal.SIGSTOP)  # freeze it, then leave what a kill in the middle of a write leaves
    with open(folder.events_file, "ab") as handle:
        handle.write(b'{"type":"step","step":99,"total_ste')
    os.kill(pid, signal.SIGKILL)
    status = service.wait(run_id, timeout=30)
    assert status.state == "failed" and "SIGKILL" in status.message
    events, _ = service.read_events(run_id)
    assert [e.type for e in events if isinstance(e, TERMINAL)] == ["failed"]
    assert folder.events_file.read_bytes().endswith(b"\n")
    assert not [e for e in events if e.type == "log" and "damaged" in e.message]  # the stub was cut, not kept


def _aborted_with_two_checkpoints(service, tiny_config) -> tuple[str, list[Path]]:
    run_id = service.start(tiny_config(**{**LONG, "training.save_steps": "2"}))
    folder = service.folder(run_id)
    wait_for(lambda: len(folder.checkpoints()) >= 2, timeout=180, what="two checkpoints")
    service.abort(run_id)
    assert service.wait(run_id, timeout=60).state == "aborted"
    return run_id, folder.checkpoints()


def _shorten(folder, steps: int) -> None:
    config = folder.load_config()
    config.training.max_steps = steps
    config.save(folder.config_file)


def test_resume_falls_back_from_a_damaged_checkpoint_and_can_be_told_which(service, tiny_config):
    run_id, (newest, older) = _aborted_with_two_checkpoints(service, tiny_config)
    weights = newest / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated, as by a crash or a full disk
    with pytest.raises(CheckpointError, match="adapter_model.safetensors is damaged"):
        service.resume(run_id, checkpoint=int(newest.name.split("-")[1]))
    folder = service.folder(run_id)
    older_step = int(older.name.split("-")[1])
    _shorten(folder, older_step + 2)
    plan = service.resume(run_id)
    assert plan.checkpoint == older and newest.name in plan.skipped[0]
    assert service.wait(run_id, timeout=300).state == "finished"
    events, _ = service.read_events(run_id)
    assert any(e.type == "log" and newest.name in e.message and "damaged" in e.message for e in events)
    assert [e.start_step for e in events if e.type == "started"][-1] == older_step
    assert folder.load_config().training.resume_from_checkpoint is None  # runtime facts stay out of config.yaml


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # the planted file is a plain pickle, not torch.save's
def test_a_planted_pickle_is_refused_and_never_runs(service, tiny_config, tmp_path):
    run_id, checkpoints = _aborted_with_two_checkpoints(service, tiny_config)
    marker = tmp_path / "payload-ran"
    for checkpoint in checkpoints:  # rewrite both in the legacy layout, with a payload in optimizer.pt
        for name in ("manifest.json", "optimizer.safetensors", "optimizer.json"):
            (checkpoint / name).unlink()
        (checkpoint / "optimizer.pt").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError, match="No checkpoint .* can be used.*optimizer.pt cannot be loaded safely"):
        service.resume(run_id)
    assert not marker.exists() and service.status(run_id).state == "aborted"


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_broken_run_folders_are_listed_as_unreadable_and_the_rest_still_list(tmp_path, strong_adapter):
    from studio.adapters import scan_adapters
    from studio.config import RunConfig
    from studio.runs.folder import RunFolder, RunStatus

    runs = tmp_path / "runs"
    for name in ("good-1", "bad-status-2", "bad-adapter-3"):
        folder = RunFolder(runs / name)
        folder.path.mkdir(parents=True)
        RunConfig().save(folder.config_file)
        folder.write_status(RunStatus(run_id=name, state="finished"))
        shutil.copytree(strong_adapter, folder.adapter_dir)
    (runs / "bad-status-2" / "status.json").write_text("{not json")
    (runs / "bad-adapter-3" / "adapter" / "adapter_config.json").write_text('{"r": 8,\n  "lora_alpha": }')
    listed = {s.run_id: s for s in TrainingService(runs, locks=DeviceLocks(tmp_path / "locks")).list_runs()}
    assert set(listed) == {"good-1", "bad-status-2", "bad-adapter-3"}
    assert listed["bad-status-2"].state == "unreadable" and "status.json" in listed["bad-status-2"].message
    scan = scan_adapters(runs)
    assert sorted(a.name for a in scan.adapters) == ["bad-status-2", "good-1"]
    assert "bad-adapter-3/adapter/adapter_config.json line 2" in scan.problems[0]
    listing = subprocess.run(
        [sys.executable, "-m", "studio.cli", "runs", "--runs-dir", str(runs)], capture_output=True, text=True
    )
    assert listing.returncode == 0 and "unreadable" in listing.stdout and "good-1" in listing.stdout
