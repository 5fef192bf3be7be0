"""``linux-ssh``: a Linux host's CPU, memory, load, disk and network over SSH, as OctoPerf does.

One connection per monitor, opened at the first collection and kept (each collection is one
command on it, reading ``/proc`` and ``df``); opened again after a failure. A key
(``private_key``, optional ``passphrase``) or a ``password``; never the agent's own keys,
ssh-agent or ~/.ssh/config. Host keys: *accept-new* for the monitor's life on this agent: the
first key seen is trusted, a different one later refuses the host ("host key changed") until the
monitor's assignment changes or the agent restarts (nothing is written to a known_hosts file).

Metrics: ``cpu_percent`` (busy share since the previous collection), ``memory_percent`` (of
MemTotal, MemAvailable excluded), ``load1``/``load5``/``load15``, ``disk_percent`` (of ``/``),
``net_rx_bytes_per_s``/``net_tx_bytes_per_s`` (every interface but ``lo``).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from agent.monitors.base import CollectError, Collector, Rates
from octotui.protocol.monitors import MonitorAssignment

COMMAND = (
    "export LC_ALL=C; cat /proc/loadavg; echo @@; head -n 1 /proc/stat; echo @@; cat /proc/meminfo; echo @@; "
    "cat /proc/net/dev; echo @@; df -P -k /"
)


def parse_target(target: str) -> tuple[str, int]:
    host, sep, port = target.strip().rpartition(":")
    if not sep:
        return target.strip(), 22
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CollectError("bad target: host[:port] expected")
    return host.strip("[]"), int(port)


def parse_output(text: str) -> tuple[dict[str, float], tuple[float, float], tuple[float, float]]:
    """Gauges, (busy, total) CPU jiffies and (rx, tx) bytes from :data:`COMMAND`'s output."""
    parts = text.split("@@\n")
    if len(parts) != 5:
        raise CollectError("malformed: unexpected output from /proc (not a Linux host?)")
    loadavg, stat, meminfo, netdev, df = parts
    try:
        load = loadavg.split()
        values = {"load1": float(load[0]), "load5": float(load[1]), "load15": float(load[2])}
        jiffies = [float(x) for x in stat.split()[1:]]
        idle = jiffies[3] + (jiffies[4] if len(jiffies) > 4 else 0.0)  # idle + iowait
        cpu = (sum(jiffies[:8]) - idle, sum(jiffies[:8]))
        mem = {
            k.strip(): float(v.split()[0]) for k, _, v in (line.partition(":") for line in meminfo.splitlines()) if v
        }
        if mem.get("MemTotal"):
            values["memory_percent"] = 100.0 * (1 - mem.get("MemAvailable", mem.get("MemFree", 0.0)) / mem["MemTotal"])
        rx = tx = 0.0
        for line in netdev.splitlines()[2:]:
            name, _, counters = line.partition(":")
            fields = counters.split()
            if name.strip() != "lo" and len(fields) >= 9:
                rx, tx = rx + float(fields[0]), tx + float(fields[8])
        df_fields = df.splitlines()[-1].split()
        used, avail = float(df_fields[2]), float(df_fields[3])
        if used + avail > 0:
            values["disk_percent"] = 100.0 * used / (used + avail)
    except (IndexError, ValueError) as exc:
        raise CollectError(f"malformed: unexpected output from /proc ({exc})") from None
    return values, cpu, (rx, tx)


class LinuxSshCollector(Collector):
    def __init__(self, assignment: MonitorAssignment) -> None:
        super().__init__(assignment)
        self.host, self.port = parse_target(self.assignment.target)
        self.conn: Any = None
        self.host_key: bytes | None = None
        self.rates = Rates()
        self._cpu: tuple[float, float] | None = None

    async def _connect(self) -> Any:
        with warnings.catch_warnings():
            # asyncssh 2.24 still names DSA keys at import; cryptography 51 warns of that on stderr,
            # once per process, about keys this agent never offers.
            warnings.filterwarnings("ignore", message="DSA is deprecated", category=UserWarning)
            import asyncssh

        # asyncssh logs every connection at INFO: keep the agent's log to what it says itself
        logging.getLogger("asyncssh").setLevel(max(logging.WARNING, logging.getLogger("asyncssh").level))
        creds = self.assignment.credentials
        if creds is None or not creds.username or not (creds.password or creds.private_key):
            raise CollectError("credentials needed: a username and a password or a private key")
        keys = []
        if creds.private_key:
            try:
                keys = [asyncssh.import_private_key(creds.private_key, creds.passphrase)]
            except (asyncssh.KeyImportError, ValueError) as exc:
                raise CollectError(f"bad private key: {str(exc).splitlines()[0][:100]}") from None
        try:
            conn = await asyncssh.connect(
                self.host, self.port, username=creds.username, password=creds.password, client_keys=keys,
                passphrase=None, known_hosts=None, agent_path=None, config=[], preferred_auth=(
                    "publickey,password,keyboard-interactive" if keys else "password,keyboard-interactive"),
                login_timeout=self.assignment.timeout, connect_timeout=self.assignment.timeout,
                keepalive_interval=0,
            )  # fmt: skip
        except asyncssh.PermissionDenied:
            raise CollectError("authentication failed") from None
        except asyncssh.Error as exc:
            raise CollectError(f"ssh: {exc.reason[:200]}") from None
        key = conn.get_server_host_key()
        seen = key.public_data if key is not None else None
        if self.host_key is None:
            self.host_key = seen
        elif seen != self.host_key:
            conn.close()
            raise CollectError("host key changed: refusing the host (it differs from the one first accepted)")
        self.version = str(conn.get_extra_info("server_version") or "")[:100] or None
        return conn

    async def collect(self) -> dict[str, float]:
        import asyncssh

        if self.conn is None:
            self.conn = await self._connect()
        try:
            result = await self.conn.run(COMMAND, check=False, stdin=asyncssh.DEVNULL)
        except (asyncssh.Error, OSError) as exc:
            await self.reset()
            reason = exc.reason if isinstance(exc, asyncssh.Error) else str(exc)
            raise CollectError(f"ssh: {reason[:200] or 'connection lost'}") from None
        if result.exit_status not in (0, None):
            err = str(result.stderr or "").strip().splitlines()
            raise CollectError(f"command failed ({result.exit_status}): {err[0][:200] if err else 'no output'}")
        values, (busy, total), (rx, tx) = parse_output(str(result.stdout or ""))
        if self._cpu is not None and total > self._cpu[1]:
            values["cpu_percent"] = 100.0 * (busy - self._cpu[0]) / (total - self._cpu[1])
        self._cpu = (busy, total)
        for key, counter in (("net_rx_bytes_per_s", rx), ("net_tx_bytes_per_s", tx)):
            rate = self.rates.rate(key, counter)
            if rate is not None:
                values[key] = rate
        return values

    async def reset(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()
