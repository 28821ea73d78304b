"""The training service with real worker subprocesses: start, abort, kill, resume, re-attach, refusals."""

import json
import os
import signal

import pytest

from studio.config import ConfigError, RunConfig
from studio.control.device_lock import DeviceBusy
from studio.control.service import TrainingService
from studio.data.registry import DataError
from studio.errors import CheckpointError
from studio.modeling.sources import ModelLoadError
from studio.runs.events import TERMINAL
from tests.support import wait_for

LONG = {"training.max_steps": "100000", "training.eval_steps": "100000", "training.save_steps": "100000"}


def _steps(service, run_id):
    events, _ = service.read_events(run_id)
    return [e for e in events if e.type == "step"]


def _terminals(service, run_id):
    events, _ = service.read_events(run_id)
    return [e for e in events if isinstance(e, TERMINAL)]


def _wait_for_step(service, run_id, step):
    wait_for(lambda: any(s.step >= step for s in _steps(service, run_id)), timeout=180, what=f"step {step}")


def test_start_streams_events_and_finishes(service, tiny_config):
    run_id = service.start(tiny_config())
    events, offset = [], 0
    status = service.wait(run_id, timeout=300)
    while True:  # read in increments, as the UI does
        more, offset = service.read_events(run_id, offset)
        if not more:
            break
        events += more
    assert status.state == "finished" and status.step == 12
    assert [type(e).__name__ for e in events if isinstance(e, TERMINAL)] == ["Finished"]
    assert [r.run_id for r in service.list_runs()] == [run_id]
    assert service.folder(run_id).load_config() == tiny_config()  # config.yaml is exactly what the user chose
    # the worker says how it batches and which allocator it runs with (tcmalloc when the system has
    # it, else glibc's malloc with the studio's tuning)
    from studio.allocator import choice, fast_allocator

    [layout] = [e.message for e in events if e.type == "log" and "Memory allocator" in e.message]
    assert "padding-free packing" in layout
    if choice() != "system":
        assert ("tcmalloc" if fast_allocator() else "Memory allocator: glibc malloc, tuned (MALLOC_") in layout


def test_abort_saves_a_checkpoint_and_resume_continues_the_step_count(service, tiny_config):
    run_id = service.start(tiny_config(**LONG))
    _wait_for_step(service, run_id, 5)
    service.abort(run_id)
    status = service.wait(run_id, timeout=120)  # the step in progress and a checkpoint first: slow under load
    assert status.state == "aborted"
    [aborted] = _terminals(service, run_id)
    assert aborted.type == "aborted" and aborted.checkpoint and aborted.step >= 5
    checkpoint = service.folder(run_id).latest_checkpoint()
    assert checkpoint.name == f"checkpoint-{aborted.step}"

    folder = service.folder(run_id)  # the user shortens the run before resuming it
    config = folder.load_config()
    config.training.max_steps = aborted.step + 4
    config.save(folder.config_file)
    service.resume(run_id)
    assert service.wait(run_id, timeout=300).state == "finished"
    resumed = [s.step for s in _steps(service, run_id) if s.step > aborted.step]
    assert resumed == list(range(aborted.step + 1, aborted.step + 5))
    assert [e.type for e in _terminals(service, run_id)] == ["aborted", "finished"]
    events, _ = service.read_events(run_id)
    assert [e.attempt for e in events if e.type == "started"] == [1, 2]
    assert [e.start_step for e in events if e.type == "started"] == [0, aborted.step]


def test_kill_9_is_detected_and_marked_failed(service, tiny_config):
    run_id = service.start(tiny_config(**LONG))
    _wait_for_step(service, run_id, 2)
    os.kill(service.status(run_id).pid, signal.SIGKILL)
    status = service.wait(run_id, timeout=30)
    assert status.state == "failed" and "SIGKILL" in status.message
    [failed] = _terminals(service, run_id)
    assert "SIGKILL" in failed.error and "[training]" in failed.traceback  # the worker log's tail


def test_a_restarted_service_reattaches_to_a_live_worker(service, tiny_config, locks):
    run_id = service.start(tiny_config(**LONG))
    _wait_for_step(service, run_id, 2)
    reopened = TrainingService(service.runs_dir, locks=locks)  # e.g. the UI process was restarted
    assert reopened.status(run_id).state == "running"
    _, offset = reopened.read_events(run_id)
    wait_for(lambda: reopened.read_events(run_id, offset)[0], timeout=60, what="new events")
    reopened.abort(run_id)
    assert reopened.wait(run_id, timeout=120).state == "aborted"  # after its checkpoint, slow under load


def test_an_orphaned_worker_that_dies_is_found_by_a_new_service(tmp_path, tiny_model_dir, monkeypatch):
    """`train --detach` leaves no parent to reap the worker: the next service to look must notice its death."""
    import subprocess
    import sys

    from studio.control.device_lock import DeviceLocks

    monkeypatch.setenv("QLORA_STUDIO_CACHE", str(tmp_path / "cache"))
    runs = tmp_path / "runs"
    command = [
        sys.executable,
        "-m",
        "studio.cli",
        "train",
        "--detach",
        "--runs-dir",
        str(runs),
        "--model.name_or_path",
        str(tiny_model_dir),
        "--data.max_samples",
        "20",
        "--training.logging_steps",
        "1",
    ] + [arg for key, value in LONG.items() for arg in (f"--{key}", value)]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    service = TrainingService(runs, locks=DeviceLocks(tmp_path / "cache" / "device-locks"))
    [status] = service.list_runs()
    _wait_for_step(service, status.run_id, 2)
    with pytest.raises(DeviceBusy):  # the detached run still holds the device for every service
        service.start(RunConfig().with_overrides({"model.name_or_path": str(tiny_model_dir)}))
    os.kill(status.pid, signal.SIGKILL)
    folder = service.folder(status.run_id)
    seen = wait_for(
        lambda: service.status(status.run_id).state == "failed" and service.status(status.run_id), timeout=30
    )
    assert "disappeared" in seen.message  # shown at once, by reading alone...
    assert folder.read_status().state == "running" and not _terminals(service, status.run_id)  # ...which wrote nothing
    service.keep_queue(poll_s=0.2)  # the supervisor records it: the queue keeper sweeps every run
    wait_for(lambda: folder.read_status().state == "failed", timeout=30, what="the end recorded by the keeper")
    final = service.wait(status.run_id, timeout=30)
    assert final.state == "failed" and "disappeared" in final.message
    assert len(_terminals(service, status.run_id)) == 1


def test_a_second_run_on_a_busy_device_is_refused(service, tiny_config):
    run_id = service.start(tiny_config(**LONG))
    try:
        with pytest.raises(DeviceBusy, match=run_id):
            service.start(tiny_config())
        with pytest.raises(DeviceBusy):  # the cheapest check comes first: before the data is even read
            service.start(tiny_config(**{"data.datasets": "[no_such_set]"}))
        assert len(list(service.runs_dir.iterdir())) == 1
    finally:
        service.abort(run_id)
        service.wait(run_id, timeout=60)


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        ({"data.datasets": "[no_such_set]"}, DataError, "Unknown dataset 'no_such_set'"),
        ({"data.dataset_dir": "/nonexistent/data"}, DataError, "Dataset folder not found"),
        ({"model.name_or_path": "/nonexistent/model"}, ModelLoadError, "Model folder /nonexistent/model not found"),
        ({"training.resume_from_checkpoint": "/nonexistent/ckpt"}, CheckpointError, "not a complete checkpoint"),
    ],
)
def test_bad_input_is_refused_before_a_folder_exists(service, tiny_config, overrides, error, message):
    with pytest.raises(error, match=message):
        service.start(tiny_config(**overrides))
    assert not service.runs_dir.exists() or not any(service.runs_dir.iterdir())


def test_bad_data_files_are_refused_with_the_line(service, tiny_config, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "dataset_info.json").write_text(
        json.dumps(
            {"broken": {"file_name": "b.jsonl"}, "cols": {"file_name": "c.json"}, "empty": {"file_name": "e.json"}}
        )
    )
    (data / "b.jsonl").write_text('{"instruction": "q", "output": "a"}\n{"instruction": "q" "output": "a"}\n')
    (data / "c.json").write_text(json.dumps([{"question": "q", "answer": "a"}]))
    (data / "e.json").write_text("")
    cases = {"broken": "b.jsonl line 2", "cols": "no column 'instruction'", "empty": "is empty"}
    for name, message in cases.items():
        with pytest.raises(DataError, match=message):
            service.start(tiny_config(**{"data.dataset_dir": str(data), "data.datasets": f"[{name}]"}))
    assert not service.runs_dir.exists() or not any(service.runs_dir.iterdir())


def test_bad_field_is_refused_by_the_config(tiny_config):
    with pytest.raises(ConfigError, match="quantization.method"):
        tiny_config(**{"quantization.method": "3bit"})


def test_failure_inside_the_worker_ends_with_a_failed_event(service, tiny_config):
    run_id = service.start(tiny_config(**{"lora.target_modules": "[no_such_module]"}))
    status = service.wait(run_id, timeout=120)
    assert status.state == "failed" and "target_modules" in status.message
    [failed] = _terminals(service, run_id)
    assert failed.type == "failed" and "Traceback" in failed.traceback


def test_early_stopping_ends_the_run_and_keeps_the_best_adapter(service, tiny_config):
    # A learning rate this large makes the eval loss climb after the first evaluations.
    run_id = service.start(
        tiny_config(
            **{
                "training.learning_rate": "0.5",
                "training.max_steps": "60",
                "training.eval_steps": "2",
                "training.early_stopping_patience": "2",
                "training.lr_scheduler": "constant",
            }
        )
    )
    assert service.wait(run_id, timeout=300).state == "finished"
    events, _ = service.read_events(run_id)
    finished = events[-1]
    evals = [e for e in events if e.type == "eval"]
    assert finished.stopped_early and finished.step < 60
    assert finished.best_eval_loss == min(e.eval_loss for e in evals)
    assert evals[-1].patience_left == 0 and finished.best_step < finished.step


def test_a_dpo_run_finishes_and_writes_preference_metrics(service, tiny_config):
    import math

    from studio.data.examples import PairwiseExample, from_record

    run_id = service.start(
        tiny_config(
            **{
                "training.stage": "dpo",
                "data.datasets": "[dpo_zh_demo]",
                "training.max_steps": "4",
                "training.eval_steps": "2",
            }
        )
    )
    assert service.wait(run_id, timeout=300).state == "finished"
    events, _ = service.read_events(run_id)
    [started] = [e for e in events if e.type == "started"]
    assert started.stage == "dpo"
    steps = [e for e in events if e.type == "step"]
    assert steps[0].loss == pytest.approx(math.log(2), abs=1e-3)  # the new adapter starts equal to its reference
    preference = [e for e in events if e.type == "preference"]
    assert [e.step for e in preference if e.split == "train"] == [1, 2, 3, 4]
    assert [e.step for e in preference if e.split == "eval"] == [2, 4]
    assert all(0 <= e.reward_accuracy <= 1 for e in preference)
    assert any(e.type == "phase" and e.name == "reference" for e in events)
    folder = service.folder(run_id)
    lines = folder.val_file.read_text(encoding="utf-8").splitlines()
    assert lines and all(isinstance(from_record(json.loads(line)), PairwiseExample) for line in lines)
    assert (folder.adapter_dir / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize(
    "stage, datasets, holds",
    [
        ("dpo", "[alpaca_zh_demo]", "conversations"),
        ("sft", "[dpo_zh_demo]", "preference pairs"),
        ("kto", "[dpo_zh_demo]", "preference pairs"),
        ("pt", "[kto_zh_demo]", "answers marked desirable or not"),
    ],
)
def test_a_dataset_of_another_kind_is_refused_before_a_folder_exists(service, tiny_config, stage, datasets, holds):
    name = datasets.strip("[]")
    with pytest.raises(
        DataError, match=rf"Dataset '{name}' cannot be used for .* \(training.stage: {stage}\): it holds {holds}"
    ):
        service.start(tiny_config(**{"training.stage": stage, "data.datasets": datasets}))
    assert not service.runs_dir.exists() or not any(service.runs_dir.iterdir())
