"""Host sampling with psutil: one :class:`HostSample` per call, rates from counter deltas.

Every call is non-blocking (``cpu_percent(interval=None)`` after one priming call) and reads a
handful of /proc files, so sampling every second costs a small fraction of one core.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import psutil

from octotui.protocol import HostSample

#: The kernel's protocol counters (per network namespace: the host's for an agent on the host network).
SNMP_PATH = Path("/proc/net/snmp")


def tcp_counters(path: Path) -> tuple[int, int, int] | None:
    """(RetransSegs, OutSegs, CurrEstab) read from a /proc/net/snmp file, None when it has none."""
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    rows = [line.split()[1:] for line in text.splitlines() if line.startswith("Tcp:")]
    if len(rows) < 2:
        return None
    fields = dict(zip(rows[0], rows[1], strict=False))
    try:
        return int(fields["RetransSegs"]), int(fields["OutSegs"]), int(fields["CurrEstab"])
    except (KeyError, ValueError):
        return None


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
        self._last_swap = self._swap_counters()
        self._last_tcp = self._tcp_counters()

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
    def _swap_counters() -> tuple[int, int] | None:
        """Bytes swapped in and out since boot (psutil reads /proc/vmstat on Linux)."""
        try:
            swap = psutil.swap_memory()
        except (OSError, RuntimeError):
            return None
        return int(swap.sin), int(swap.sout)

    @staticmethod
    def _tcp_counters() -> tuple[int, int, int] | None:
        """TCP segments retransmitted and sent since boot, and connections established now, from
        /proc/net/snmp (one small file; psutil has no such counters, and counting connections with
        ``net_connections`` walks every socket of the machine). None where there is no such file."""
        return tcp_counters(SNMP_PATH)

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
        swapped = self._swap_counters()
        swap_in, swap_out = self._rates(self._last_swap, swapped, elapsed)
        tcp = self._tcp_counters()
        retransmits, segments_out = self._rates(
            self._last_tcp[:2] if self._last_tcp else None, tcp[:2] if tcp else None, elapsed
        )
        self._last_time, self._last_disk, self._last_net = now, disk, net
        self._last_swap, self._last_tcp = swapped, tcp
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
            swap_in_bps=swap_in,
            swap_out_bps=swap_out,
            tcp_retransmits_per_s=retransmits,
            tcp_segments_out_per_s=segments_out,
            tcp_established=tcp[2] if tcp else 0,
        )


#: Where a Linux machine keeps its id (systemd's, then D-Bus's for machines without systemd).
MACHINE_ID_PATHS = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))
_MACHINE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")


def machine_id(paths: tuple[Path, ...] = MACHINE_ID_PATHS) -> str | None:
    """This machine's id, so the server sees two identities on one machine; None when none is readable
    (an agent in a container sees the host's only when ``/etc/machine-id`` is mounted)."""
    for path in paths:
        try:
            text = path.read_text(encoding="ascii", errors="replace").strip()
        except OSError:
            continue
        if _MACHINE_ID.match(text):
            return text
    return None
