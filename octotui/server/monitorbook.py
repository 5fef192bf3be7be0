"""Monitors in memory: their records, live windows of samples, alarms being raised, the series kept
for tests, and what each agent is assigned (``domain/monitors.py`` and ``domain/alarms.py`` own the
rules; this module only holds the data, so that the server's state can import it)."""

from __future__ import annotations

import math
from array import array
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from octotui.protocol.monitors import Threshold

#: Seconds of samples kept per monitor for ``GET /monitors/{id}/metrics``.
WINDOW_S = 600.0
#: Points of one metric's series kept with a test: past it, neighbours are merged two by two.
SERIES_MAX_POINTS = 2000


@dataclass(slots=True)
class MonitorRec:
    """A monitor as stored (``spec`` is everything but its identity and credentials) and as it runs."""

    id: str
    name: str
    agent_id: str
    kind: str
    spec: dict[str, Any]
    credentials: bytes | None
    created_at: float
    updated_at: float
    # --- live, never stored ---
    state: str = "pending"
    error: str | None = None
    #: Why its credentials cannot be sent (no key file, another key): it is not assigned meanwhile.
    secret_error: str | None = None
    last_ts: float | None = None
    last_values: dict[str, float] = field(default_factory=dict)
    #: (ts, metric names, values): the names are one tuple shared by the samples that name the same
    #: metrics, the values packed doubles, so that 1,000 monitors' windows stay small and out of
    #: the garbage collector's way (a dict per sample cost ~1.6 KB; this ~0.3 KB).
    window: deque[tuple[float, tuple[str, ...], array[float]]] = field(default_factory=deque)
    #: When each threshold's bound was first crossed (agent clock), by (metric, severity).
    crossed: dict[tuple[str, str], float] = field(default_factory=dict)
    #: ``spec["thresholds"]`` parsed once (checked on every sample).
    rules: list[Threshold] = field(default_factory=list)

    @property
    def mode(self) -> str:
        return str(self.spec.get("mode", "always"))

    @property
    def interval(self) -> float:
        return float(self.spec["interval"])

    def samples(self, since: float = float("-inf")) -> list[tuple[float, dict[str, float]]]:
        """The window's samples from ``since`` on, oldest first."""
        return [(ts, dict(zip(names, vals, strict=True))) for ts, names, vals in self.window if ts >= since]

    def add(self, ts: float, values: dict[str, float]) -> bool:
        """A sample into the window (older than ``WINDOW_S`` before the newest dropped); False for
        one not newer than the last (sent again after a lost answer): it is taken once only."""
        w = self.window
        if w and ts <= w[-1][0]:
            return False
        names = tuple(values)
        if w and w[-1][1] == names:
            names = w[-1][1]
        w.append((ts, names, array("d", values.values())))
        edge = ts - WINDOW_S
        while w and w[0][0] < edge:
            w.popleft()
        self.last_ts = ts
        self.last_values = values
        return True


@dataclass(slots=True)
class AlarmRec:
    id: int
    monitor_id: str
    monitor_name: str
    metric: str
    severity: str
    started_at: float
    value: float | None
    threshold: str
    test_id: str | None = None
    ended_at: float | None = None


class MetricLine:
    """One metric's values during a test, bounded: past ``max_points`` neighbours merge two by two
    (their mean at the later one's time), so a long test keeps its whole shape in ``max_points``.
    Kept as two arrays of doubles (16 bytes a point)."""

    __slots__ = ("max_points", "ts", "values", "width")

    def __init__(self, width: int = 1, max_points: int = SERIES_MAX_POINTS) -> None:
        self.width = width  # how many samples a point stands for (at most)
        self.max_points = max(4, max_points)
        self.ts: array[float] = array("d")
        self.values: array[float] = array("d")

    def __len__(self) -> int:
        return len(self.ts)

    @property
    def points(self) -> list[tuple[float, float]]:
        return list(zip(self.ts, self.values, strict=True))

    def add(self, ts: float, value: float) -> None:
        if not math.isfinite(value) or (self.ts and ts <= self.ts[-1]):
            return
        self.ts.append(ts)
        self.values.append(value)
        if len(self.ts) > self.max_points:
            t, v = self.ts, self.values
            n = len(t) - len(t) % 2
            self.ts = array("d", t[1:n:2])
            self.values = array("d", ((v[i] + v[i + 1]) / 2 for i in range(0, n, 2)))
            if len(t) % 2:
                self.ts.append(t[-1])
                self.values.append(v[-1])
            self.width *= 2

    def pack(self) -> tuple[float, bytes]:
        packed = array("d")
        for ts, value in zip(self.ts, self.values, strict=True):
            packed.extend((ts, value))
        return float(self.width), packed.tobytes()

    @classmethod
    def unpack(cls, width: float, packed: bytes) -> MetricLine:
        line = cls(int(width))
        values = array("d", packed)
        line.ts = array("d", values[0::2])
        line.values = array("d", values[1::2])
        return line


@dataclass
class MonitorBook:
    """Every monitor and what goes with it, kept in the server's state."""

    by_id: dict[str, MonitorRec] = field(default_factory=dict)
    #: Alarms raised and not cleared, by monitor id then (metric, severity).
    active: dict[str, dict[tuple[str, str], AlarmRec]] = field(default_factory=dict)
    next_alarm: int = 1
    #: Alarms raised or cleared since the last store write.
    unsaved_alarms: dict[int, AlarmRec] = field(default_factory=dict)
    #: The monitors each test names, and whether a critical alarm stops it.
    of_test: dict[str, tuple[list[str], bool]] = field(default_factory=dict)
    #: Tests not ended naming each monitor (recomputed when tests or monitors change).
    live_tests: dict[str, list[str]] = field(default_factory=dict)
    #: The tests not ended that name monitors, when ``live_tests`` was computed.
    live_key: frozenset[str] | None = None
    #: Each agent's assignment: (revision, monitor ids); revision 0: none.
    assigned: dict[str, tuple[int, list[str]]] = field(default_factory=dict)
    #: Agents whose last heartbeat held no ``monitor_revision``: older than monitors, sent none.
    too_old: set[str] = field(default_factory=set)
    #: Series of monitors' metrics kept with tests not ended, by (test id, monitor id, metric).
    series: dict[tuple[str, str, str], MetricLine] = field(default_factory=dict)
    series_unsaved: set[tuple[str, str, str]] = field(default_factory=set)
    series_saved_at: float = 0.0

    def of_agent(self, agent_id: str) -> list[MonitorRec]:
        return [m for m in self.by_id.values() if m.agent_id == agent_id]

    def by_name(self, name: str) -> MonitorRec | None:
        return next((m for m in self.by_id.values() if m.name == name), None)
