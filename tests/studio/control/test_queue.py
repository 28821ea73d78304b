"""The run queue: a Start on a busy device can wait instead, and starts by itself when the device frees up,
also after the service that queued it is gone. Real workers, real device locks."""

import pytest

from studio.control.device_lock import DeviceBusy
from studio.control.devices import DeviceChoiceError, DevicePlan, devices_value, plan_devices
from studio.control.service import TrainingService
from tests.support import wait_for

LONG = {"training.max_steps": "100000", "training.eval_steps": "100000", "training.save_steps": "100000"}
SHORT = {"training.max_steps": "3", "training.eval_steps": "100000"}


def test_a_queued_run_waits_survives_a_restart_and_starts_when_the_device_frees(tmp_path, locks, tiny_config):
    first = TrainingService(tmp_path / "runs", locks=locks)
    busy = first.start(tiny_config(**LONG))
    with pytest.raises(DeviceBusy, match="queue this run"):
        first.start(tiny_config(**SHORT))
    waiting = first.start(tiny_config(**SHORT), queue=True)
    later = first.start(tiny_config(**SHORT), queue=True)
    status = first.status(waiting)
    assert status.state == "queued" and status.queue_position == 1
    assert "queued #1" in status.message and busy in status.message  # what it waits for
    assert first.status(later).queue_position == 2
    assert first.abort(later) == "cancelled"  # cancelled while queued: it never starts
    assert first.status(later).state == "cancelled" and first.status(later).message == "cancelled while queued"
    assert first.dispatch_queue() == []  # the device is still busy

    # the service that queued it is gone (a server restart); a new one keeps the queue
    second = TrainingService(tmp_path / "runs", locks=locks)
    second.keep_queue(poll_s=0.5)
    assert second.status(waiting).state == "queued"
    assert second.abort(busy) == "stopping"
    assert second.wait(busy, timeout=120).state == "aborted"
    assert second.wait(waiting, timeout=300).state == "finished"
    assert second.status(later).state == "cancelled" and second.abort(later) == "ended"
    assert second.queued() == []


def test_a_queued_run_that_can_no_longer_start_fails_saying_why(tmp_path, locks, tiny_config):
    service = TrainingService(tmp_path / "runs", locks=locks)
    busy = service.start(tiny_config(**LONG))
    waiting = service.start(tiny_config(**SHORT), queue=True)
    (service.folder(waiting).config_file).write_text("training: {devices: cuda:7}\n")  # edited by hand meanwhile
    service.abort(busy)
    service.wait(busy, timeout=120)
    wait_for(lambda: service.dispatch_queue() == [] and service.status(waiting).state == "failed", timeout=30)
    assert "could not start" in service.status(waiting).message


def test_devices_read_against_the_machine(tiny_config):
    config = tiny_config
    assert plan_devices(config(), gpu_count=0) == DevicePlan("cpu")
    assert plan_devices(config(**{"training.devices": "2"}), gpu_count=0) == DevicePlan("cpu", processes=2)
    two = plan_devices(config(**{"training.devices": "cuda:1,0"}), gpu_count=2)
    assert two.gpus == (1, 0) and two.lock_names == ["cuda1", "cuda0"] and two.processes == 2
    assert two.environment("3,5")["CUDA_VISIBLE_DEVICES"] == "5,3"  # numbers count within what this process sees
    assert plan_devices(config(**{"training.devices": "auto"}), gpu_count=4).lock_names == ["cuda0"]
    assert plan_devices(config(**{"training.devices": "cpu"}), gpu_count=4).environment()["CUDA_VISIBLE_DEVICES"] == ""
    with pytest.raises(DeviceChoiceError, match="GPU 2"):
        plan_devices(config(**{"training.devices": "cuda:2"}), gpu_count=2)
    with pytest.raises(DeviceChoiceError, match="no usable GPU"):
        plan_devices(config(**{"training.devices": "cuda:0"}), gpu_count=0)
    nodes = plan_devices(config(**{"training.devices": "2", "distributed.nnodes": "3"}), gpu_count=2)
    assert nodes.world_size == 6 and nodes.distributed
    assert devices_value(["cuda:1", "cpu", "cuda:0"]) == "cuda:0,1"
    assert devices_value(["cpu"]) == "cpu" and devices_value([]) == "auto"
    fsdp = {"training.devices": "2", "distributed.strategy": "fsdp"}
    with pytest.raises(DeviceChoiceError, match="cannot shard a 4-bit base"):  # tiny_config quantises
        plan_devices(config(**fsdp), gpu_count=2)
    assert plan_devices(config(**fsdp, **{"quantization.method": "none"}), gpu_count=2).processes == 2
    with pytest.raises(DeviceChoiceError, match="cannot shard a 4-bit base"):  # bitsandbytes' CPU backend alike
        plan_devices(config(**fsdp), gpu_count=0)
    assert plan_devices(config(**fsdp, **{"quantization.method": "auto"}), gpu_count=0).processes == 2  # plain on CPU
    plain = {**fsdp, "quantization.method": "none"}
    for stage in ("ppo", "grpo"):  # each rank samples answers of its own length: FSDP's gathers would wait forever
        with pytest.raises(DeviceChoiceError, match=f"cannot train {stage}"):
            plan_devices(config(**plain, **{"training.stage": stage}), gpu_count=2)
    assert plan_devices(config(**plain, **{"training.stage": "rm"}), gpu_count=2).processes == 2
