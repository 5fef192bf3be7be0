"""Host sampling with psutil: one :class:`HostSample` per call, rates from counter deltas.

Every call is non-blocking (``cpu_percent(interval=None)`` after one priming call) and reads a
handful of /proc files, so sampling every second costs a small fraction of one core.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil

from octotui.protocol import HostSample


def _disk_path(path: Path | None) -> str:
    candidate = path if path is not None else Path("/")
    while not candidate.exists() and candidate != candidate.parent:
        candidate = candidate.parent
    return str(candidate)


class HostSampler:
    """Samples this machine; keep one instance, since rates come from the previous call's counters."""

    def __init__(self, disk_path: Path | None = None) -> None:
        self.disk_path = _disk_path(disk_path)
        self.cpu_count = psutil.cpu_count() or 1
        self.memory_total = int(psutil.virtual_memory().total)
        psutil.cpu_percent(percpu=True)  # primes the counters: the first non-blocking call is 0 otherwise
        self._last_time = time.monotonic()
        self._last_disk = self._disk_counters()
        self._last_net = self._net_counters()

    @staticmethod
    def _disk_counters() -> tuple[int, int] | None:
        try:
            counters = psutil.disk_io_counters(perdisk=False, nowrap=True)
        except (OSError, RuntimeError):
            return None
        return (counters.read_bytes, counters.write_bytes) if counters is not None else None

    @staticmethod
    def _net_counters() -> tuple[int, int] | None:
        try:
            counters = psutil.net_io_counters(pernic=False, nowrap=True)
        except (OSError, RuntimeError):
            return None
        return (counters.bytes_sent, counters.bytes_recv) if counters is not None else None

    @staticmethod
    def _rates(before: tuple[int, int] | None, after: tuple[int, int] | None, seconds: float) -> tuple[float, float]:
        if before is None or after is None or seconds <= 0:
            return 0.0, 0.0
        return max(after[0] - before[0], 0) / seconds, max(after[1] - before[1], 0) / seconds

    def sample(self) -> HostSample:
        """Read the host now."""
        now = time.monotonic()
        per_core = psutil.cpu_percent(percpu=True)
        memory = psutil.virtual_memory()
        swap = psutil.swap_memory()
        try:
            disk_percent = psutil.disk_usage(self.disk_path).percent
        except OSError:
            disk_percent = 0.0
        disk = self._disk_counters()
        net = self._net_counters()
        elapsed = now - self._last_time
        disk_read, disk_write = self._rates(self._last_disk, disk, elapsed)
        net_sent, net_recv = self._rates(self._last_net, net, elapsed)
        self._last_time, self._last_disk, self._last_net = now, disk, net
        try:
            load1, load5, load15 = os.getloadavg()
        except OSError:
            load1 = load5 = load15 = 0.0
        return HostSample(
            ts=time.time(),
            # every core covers the same wall time, so the mean of the cores is the total
            cpu_percent=round(sum(per_core) / len(per_core), 1) if per_core else 0.0,
            cpu_per_core=per_core,
            memory_percent=memory.percent,
            memory_used=int(memory.total - memory.available),
            memory_total=int(memory.total),
            swap_percent=swap.percent,
            disk_percent=disk_percent,
            disk_read_bps=disk_read,
            disk_write_bps=disk_write,
            net_sent_bps=net_sent,
            net_recv_bps=net_recv,
            load1=load1,
            load5=load5,
            load15=load15,
        )
