"""A wire-level agent's container that keeps reporting, figures rising, until told to end: for the
dashboard's tests and screenshots of a running test's charts without Docker or JMeter."""

from __future__ import annotations

import threading
from typing import Any

from tests.support.wireagent import WireAgent


class Beating:
    """A wire agent's heartbeats for one running container every 0.25 s, figures rising, in a thread."""

    def __init__(self, agent: WireAgent, report: dict[str, Any]) -> None:
        self.agent, self.report = agent, report
        self.stop = threading.Event()
        self.beats = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set() and self.beats < 2000:
            n = self.beats = self.beats + 1
            figures = {"samples": 40 * n, "errors": n // 4, "rate": 20.0 + 30 * (n % 3), "avg_ms": 50.0 + n % 7,
                       "min_ms": 2, "max_ms": 400, "active": 6}  # fmt: skip
            usage = {"cpu_percent": 10.0 + 5 * (n % 5), "memory_bytes": (200 + n) * 2**20}
            self.agent.beat({**self.report, "figures": figures, **usage})
            self.stop.wait(0.25)

    def end(self) -> None:
        """Stop beating; the container then reports it finished (JMeter exited 0)."""
        self.stop.set()
        self.thread.join(timeout=10)
        figures = {"samples": 40 * self.beats, "errors": 1, "rate": 0.0, "avg_ms": 50.0, "min_ms": 2, "max_ms": 400,
                   "active": 0}  # fmt: skip
        self.agent.beat({**self.report, "state": "finished", "exit_code": 0, "figures": figures})
