"""``nginx`` (stub_status) and ``apache`` (mod_status ``?auto``): a web server's own status page.

nginx: ``active``, ``reading``, ``writing``, ``waiting`` and the rates ``accepts_per_s``,
``handled_per_s``, ``requests_per_s``. apache: ``busy_workers``, ``idle_workers``, ``requests_per_s``,
``bytes_per_s``, ``cpu_load`` when given, and the ``conns_total``/``load1``... gauges it prints.
"""

from __future__ import annotations

import re

from agent.monitors.base import CollectError, Rates, expect_ok
from agent.monitors.httpget import HttpCollector
from octotui.protocol.monitors import MonitorAssignment

_NGINX = re.compile(
    rb"Active connections:\s*(\d+)\s*\n\s*server accepts handled requests\s*\n\s*(\d+)\s+(\d+)\s+(\d+)\s*\n"
    rb"\s*Reading:\s*(\d+)\s+Writing:\s*(\d+)\s+Waiting:\s*(\d+)"
)


class NginxCollector(HttpCollector):
    def __init__(self, assignment: MonitorAssignment) -> None:
        super().__init__(assignment)
        self.rates = Rates()

    async def collect(self) -> dict[str, float]:
        page = await self.fetch()
        expect_ok(page.status, page.reason)
        found = _NGINX.search(page.body)
        if found is None:
            raise CollectError("malformed: not an nginx stub_status page")
        active, accepts, handled, requests, reading, writing, waiting = (float(x) for x in found.groups())
        values = {"active": active, "reading": reading, "writing": writing, "waiting": waiting}
        for key, total in (("accepts_per_s", accepts), ("handled_per_s", handled), ("requests_per_s", requests)):
            rate = self.rates.rate(key, total)
            if rate is not None:
                values[key] = rate
        return values


#: mod_status ``?auto`` fields kept as they are, by their name there.
_APACHE_GAUGES = {"BusyWorkers": "busy_workers", "IdleWorkers": "idle_workers", "ConnsTotal": "conns_total",
                  "CPULoad": "cpu_load", "Load1": "load1", "Load5": "load5", "Load15": "load15"}  # fmt: skip
_APACHE_COUNTERS = {"Total Accesses": "requests_per_s", "Total kBytes": "kbytes_per_s"}


class ApacheCollector(HttpCollector):
    def __init__(self, assignment: MonitorAssignment) -> None:
        super().__init__(assignment)
        if "?" not in self.url:
            self.url += "?auto"
        self.rates = Rates()

    async def collect(self) -> dict[str, float]:
        page = await self.fetch()
        expect_ok(page.status, page.reason)
        fields: dict[str, str] = {}
        for line in page.body.decode("utf-8", "replace").splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        if "BusyWorkers" not in fields:
            raise CollectError("malformed: not an apache mod_status ?auto page")
        if "ServerVersion" in fields:
            self.version = fields["ServerVersion"][:200]
        values: dict[str, float] = {}
        for name, key in _APACHE_GAUGES.items():
            if name in fields:
                try:
                    values[key] = float(fields[name])
                except ValueError:
                    continue
        for name, key in _APACHE_COUNTERS.items():
            if name in fields:
                try:
                    rate = self.rates.rate(key, float(fields[name]))
                except ValueError:
                    continue
                if rate is not None:
                    values[key] = rate
        return values
