"""What a run's devices have free: the machine's RAM within its cgroup's limit, GPUs as nvidia-smi reads them."""

import shutil

import psutil
import pytest

from studio.control.devices import DevicePlan
from studio.estimates.free_memory import GIB, cpu_memory, free_memory, gpu_memory


def test_the_cpu_has_what_the_kernel_says_is_available():
    (reading,) = free_memory(DevicePlan("cpu", processes=2))  # a CPU's processes share one RAM
    assert reading.device == "cpu"
    assert 0 < reading.free_gib <= reading.total_gib
    assert reading.total_gib <= psutil.virtual_memory().total / GIB + 1e-9
    assert reading.free_gib == pytest.approx(psutil.virtual_memory().available / GIB, rel=0.2)


def _cgroup(tmp_path, limit: str, usage: str):
    (tmp_path / "memory.max").write_text(limit + "\n")
    (tmp_path / "memory.current").write_text(usage + "\n")
    return ((tmp_path / "memory.max", tmp_path / "memory.current"),)


def test_a_cgroup_limit_bounds_the_free_memory(tmp_path):
    reading = cpu_memory(_cgroup(tmp_path, str(2 * 2**30), str(int(1.5 * 2**30))))
    assert reading.total_gib == pytest.approx(2.0)
    assert reading.free_gib == pytest.approx(0.5)


def test_no_limit_leaves_the_machine_s_memory(tmp_path):
    unlimited = cpu_memory(_cgroup(tmp_path, "max", "123"))  # cgroup v2
    v1 = cpu_memory(_cgroup(tmp_path, "9223372036854771712", "123"))  # cgroup v1 writes "no limit" so
    for reading in (unlimited, v1):
        assert reading.total_gib == pytest.approx(psutil.virtual_memory().total / GIB)


@pytest.mark.skipif(shutil.which("nvidia-smi") is None, reason="no nvidia-smi on this machine")
def test_each_chosen_gpu_is_read():
    (reading,) = gpu_memory((0,))
    assert reading.device == "cuda:0" and 0 < reading.free_gib <= reading.total_gib
