"""A wire-level agent that runs the monitors the server assigns it by reporting made-up samples in
its heartbeats (in a thread, every 0.25 s), for the dashboard's monitor tests and screenshots
without a real target: what each monitor reports is decided by the test (values or an error)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from tests.support.processes import ServerProcess
from tests.support.wireagent import WireAgent

#: What a monitor reports on beat ``n``: its values, or an error in words (state ``error``).
Report = Callable[[int], "dict[str, float] | str"]


class MonitorBeating:
    """Agent ``name`` (provider ``token``) beating every 0.25 s: each monitor assigned to it reports
    ``reports[its target]`` (default: ``{"up": 1}``); ``assignments`` holds what the server sent it
    (credentials included: only this agent gets them)."""

    def __init__(self, server: ServerProcess, token: str, name: str = "gen1") -> None:
        self.agent = WireAgent(server, token, name)
        self.reports: dict[str, Report] = {}
        self.assignments: dict[str, dict[str, Any]] = {}
        self.revision: int | None = 0  # none held (an agent sending None is older than monitors)
        #: A running container's report (``WireAgent.take_launch``): reported with rising figures.
        self.container: dict[str, Any] | None = None
        self.beats = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def id(self) -> str:
        return str(self.agent.id)

    def start(self) -> MonitorBeating:
        self.thread.start()
        return self

    def _report(self, monitor_id: str, n: int) -> dict[str, Any]:
        with self.lock:
            target = self.assignments.get(monitor_id, {}).get("target", "")
            make = self.reports.get(target)
        got = make(n) if make is not None else {"up": 1.0}
        if isinstance(got, str):
            return {"id": monitor_id, "state": "error", "error": got, "samples": []}
        return {"id": monitor_id, "state": "ok", "samples": [{"ts": time.time(), "values": got}]}

    def _containers(self, n: int) -> list[dict[str, Any]]:
        if self.container is None:
            return []
        figures = {"samples": 40 * n, "errors": 0, "rate": 20.0 + 30 * (n % 3), "avg_ms": 50.0 + n % 7,
                   "min_ms": 2, "max_ms": 400, "active": 6}  # fmt: skip
        return [{**self.container, "figures": figures}]

    def _run(self) -> None:
        http, auth = self.agent.http, self.agent.auth
        while not self.stop.is_set() and self.beats < 4000:
            n = self.beats = self.beats + 1
            host = {"ts": time.time(), "cpu_percent": 5.0, "memory_percent": 10.0, "memory_total": 2**33}
            body = {"host": host, "docker": {"available": True, "version": "28"}, "complete": False,
                    "containers": self._containers(n), "monitor_revision": self.revision,
                    "monitors": [self._report(m, n) for m in list(self.assignments)]}  # fmt: skip
            try:
                answer = http.post(f"/agents/{self.agent.id}/heartbeat", json=body, headers=auth)
                if answer.status_code == 200:
                    data = answer.json()
                    if data.get("monitors") is not None:
                        with self.lock:
                            self.assignments = {m["id"]: m for m in data["monitors"]}
                        self.revision = data.get("monitor_revision")
            except Exception:  # the server is stopping: the test ends this thread next
                pass
            self.stop.wait(0.25)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.agent.close()
