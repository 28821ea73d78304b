import time

from studio.gpu_monitor import GpuSampler, parse_nvidia_smi, read_gpus
from tests.support import wait_for

SAMPLE = "0, NVIDIA H100 80GB HBM3, 1234, 81559, 97\n1, NVIDIA A10, 13000, 23028, [N/A]\n"


def test_parses_nvidia_smi_csv():
    first, second = parse_nvidia_smi(SAMPLE)
    assert (first.index, first.name, first.used_mib, first.total_mib, first.utilization_pct) == (
        0,
        "NVIDIA H100 80GB HBM3",
        1234.0,
        81559.0,
        97.0,
    )
    assert second.utilization_pct is None


def test_sampler_emits_readings_periodically():
    emitted = []
    sampler = GpuSampler(emitted.append, interval=0.05, reader=lambda: parse_nvidia_smi(SAMPLE)).start()
    wait_for(lambda: len(emitted) >= 3, timeout=30, poll=0.05, what="three readings")  # a thread starved under load
    sampler.stop()
    assert emitted[0].gpus[0].used_mib == 1234.0


def test_no_gpu_means_no_thread_and_no_events():
    emitted = []
    sampler = GpuSampler(emitted.append, interval=0.01, reader=lambda: []).start()
    time.sleep(0.05)
    sampler.stop()
    assert emitted == []
    if not read_gpus():  # this machine has no nvidia-smi: the real reader says so with an empty list
        assert read_gpus() == []
