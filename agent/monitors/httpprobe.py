"""``http``: probe a URL: ``status``, ``latency_ms``, ``cert_days`` (https: days until the
certificate expires), ``match`` (1 or 0, when the assignment has a regular expression) and
``bytes`` (body size). Any answer is a sample (a 500 is a status, not a failure of the probe);
no answer (refused, timed out, TLS refused, body too large) is the monitor's error."""

from __future__ import annotations

import re

from agent.monitors.base import CollectError
from agent.monitors.httpget import HttpCollector
from octotui.protocol.monitors import MonitorAssignment


class HttpProbe(HttpCollector):
    def __init__(self, assignment: MonitorAssignment) -> None:
        super().__init__(assignment)
        self.pattern: re.Pattern[bytes] | None = None
        if self.assignment.match:
            try:
                self.pattern = re.compile(self.assignment.match.encode())
            except re.error as exc:
                raise CollectError(f"bad match expression: {exc}") from None

    async def collect(self) -> dict[str, float]:
        page = await self.fetch()
        values = {"status": float(page.status), "latency_ms": round(page.latency_ms, 3), "bytes": float(len(page.body))}
        if page.cert_days is not None:
            values["cert_days"] = round(page.cert_days, 3)
        if self.pattern is not None:
            values["match"] = 1.0 if self.pattern.search(page.body) else 0.0
        return values
