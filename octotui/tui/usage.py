"""Each container's CPU and memory over time, for the open test: the agent sends only the latest
figures of each container in every heartbeat, so the dashboard keeps a bounded window of them.

Plain Python, no Textual: the app feeds it every detail of the open test it fetches and hands the
screen a new :class:`UsageRevision` whenever a container's figures moved on.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from octotui.protocol import TERMINAL_CONTAINER_STATES, Test

#: How many samples of each container are kept: 10 minutes at a 1 s heartbeat, 50 at the default 5 s.
USAGE_WINDOW = 600


@dataclass(frozen=True)
class Usage:
    """One container's figures as one heartbeat reported them (``ts``: unix time)."""

    ts: float
    cpu_percent: float
    memory_bytes: int


class ContainerUsage:
    """CPU and memory of each container of one test, ``window`` samples each at most."""

    def __init__(self, test_id: str, window: int = USAGE_WINDOW) -> None:
        self.test_id = test_id
        self.window = window
        self._series: dict[str, deque[Usage]] = {}

    def add(self, test: Test) -> bool:
        """Take the figures of ``test``'s containers that a heartbeat updated since the last call
        (a poll faster than the heartbeats brings the same figures again: those are not repeated);
        True when any was new. A container that has ended adds nothing: it no longer runs."""
        if test.id != self.test_id:
            return False
        changed = False
        for c in test.containers:
            if c.updated_at is None or c.state in TERMINAL_CONTAINER_STATES or c.state == "pulling":
                continue
            ts = c.updated_at.timestamp()
            series = self._series.get(c.id)
            if series is None:
                series = self._series[c.id] = deque(maxlen=self.window)
            elif series and series[-1].ts >= ts:
                continue
            series.append(Usage(ts, c.cpu_percent, c.memory_bytes))
            changed = True
        return changed

    def of(self, container_id: str) -> tuple[Usage, ...]:
        """The samples kept of one container, oldest first."""
        return tuple(self._series.get(container_id, ()))


@dataclass(frozen=True)
class UsageRevision:
    """What the app hands the test screen: a new one each time ``usage`` took new samples."""

    revision: int
    usage: ContainerUsage
