"""GPU memory and utilisation from nvidia-smi, sampled in a background thread while a run trains."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Callable

from studio.runs.events import Gpu, GpuReading

QUERY = "index,name,memory.used,memory.total,utilization.gpu"


def parse_nvidia_smi(csv_text: str) -> list[GpuReading]:
    """Rows of `nvidia-smi --query-gpu=QUERY --format=csv,noheader,nounits`."""
    readings = []
    for row in csv_text.strip().splitlines():
        fields = [f.strip() for f in row.split(",")]
        if len(fields) != 5:
            continue
        index, name, used, total, utilization = fields
        readings.append(
            GpuReading(
                index=int(index),
                name=name,
                used_mib=float(used),
                total_mib=float(total),
                utilization_pct=_number_or_none(utilization),
            )
        )
    return readings


def _number_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:  # "[N/A]" on some virtualised GPUs
        return None


def read_gpus() -> list[GpuReading]:
    """One reading per GPU; empty when there is no nvidia-smi or it fails."""
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return []
    try:
        result = subprocess.run(
            [executable, f"--query-gpu={QUERY}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (subprocess.SubprocessError, OSError):
        return []
    return parse_nvidia_smi(result.stdout)


class GpuSampler:
    """Emits a Gpu event every `interval` seconds until stopped; does nothing without a GPU."""

    def __init__(
        self, emit: Callable[[Gpu], None], interval: float = 2.0, reader: Callable[[], list[GpuReading]] = read_gpus
    ):
        self._emit, self._interval, self._reader = emit, interval, reader
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gpu-sampler", daemon=True)

    def start(self) -> GpuSampler:
        if self._reader():
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            readings = self._reader()
            if readings:
                try:
                    self._emit(Gpu(gpus=readings))
                except OSError:
                    return  # the run folder takes no more writes; the worker reports why

            self._stop.wait(self._interval)
