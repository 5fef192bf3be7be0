"""Live, in-memory parts of the server behind small interfaces: windows of recent figures and
the delivery of commands to agents waiting on their long poll.

With several server replicas on one PostgreSQL each keeps its own (``replica.py`` pushes the
commands queued through another replica here, waking the long polls waiting on this one).
"""

from __future__ import annotations

import asyncio
import contextlib
import operator
import random
import struct
import time
from array import array
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from octotui.protocol import Command, HostSample, TestSeriesPoint
from octotui.server.records import CommandRec
from octotui.server.timeline import FINE_SPAN, MAX_POINTS, Point, Timeline

#: A host sample is kept as the bytes of an ``array('d')``: the scalar fields in this order, then
#: the per-core figures. ``bytes`` is one of the few objects the garbage collector does not track
#: (an ``array`` is tracked): 5,000 agents keep 3 million samples, which every full collection
#: would otherwise walk, stalling the event loop for seconds (docs/BENCHMARKS.md).
SAMPLE_FIELDS = tuple(name for name in HostSample.model_fields if name != "cpu_per_core")
_TS = SAMPLE_FIELDS.index("ts")
_CPU = SAMPLE_FIELDS.index("cpu_percent")
_SCALARS = len(SAMPLE_FIELDS)
_INTS = frozenset(name for name, field in HostSample.model_fields.items() if field.annotation in (int, "int"))
_SCALAR_VALUES = operator.attrgetter(*SAMPLE_FIELDS)
_DOUBLE = struct.Struct("d")


def sample_bytes(sample: HostSample) -> bytes:
    packed = array("d", _SCALAR_VALUES(sample))  # one C call: this runs for every sample of every heartbeat
    packed.extend(sample.cpu_per_core)
    return packed.tobytes()


def _field(packed: bytes, index: int) -> float:
    return _DOUBLE.unpack_from(packed, index * _DOUBLE.size)[0]  # type: ignore[no-any-return]


def sample_from_bytes(packed: bytes) -> HostSample:
    values = array("d", packed)
    data: dict[str, object] = {
        name: int(value) if name in _INTS else value for name, value in zip(SAMPLE_FIELDS, values, strict=False)
    }
    data["cpu_per_core"] = values[_SCALARS:].tolist()
    return HostSample.model_construct(**data)  # type: ignore[arg-type]


class HostWindows:
    """A bounded window of host samples per agent."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._windows: dict[str, deque[bytes]] = {}

    def add(self, agent_id: str, samples: list[HostSample]) -> None:
        """Append samples (oldest first), skipping any not newer than the last one kept."""
        window = self._windows.get(agent_id)
        if window is None:
            window = self._windows[agent_id] = deque(maxlen=self.size)
        last = _field(window[-1], _TS) if window else float("-inf")
        for sample in samples:
            if sample.ts > last:
                window.append(sample_bytes(sample))
                last = sample.ts

    def get(self, agent_id: str, seconds: float | None = None) -> list[HostSample]:
        """Samples of the last ``seconds`` (by the agent's clock), or the whole window."""
        window = self._windows.get(agent_id)
        if not window:
            return []
        rows = list(window)
        if seconds is not None:
            since = _field(rows[-1], _TS) - seconds
            rows = [row for row in rows if _field(row, _TS) >= since]
        return [sample_from_bytes(row) for row in rows]

    def mean_cpu(self, agent_id: str, count: int = 10) -> float | None:
        """Mean CPU % of the last ``count`` samples: one reading alone is too noisy to place by."""
        window = self._windows.get(agent_id)
        if not window:
            return None
        recent = [_field(window[-i], _CPU) for i in range(1, min(count, len(window)) + 1)]
        return sum(recent) / len(recent)

    def drop(self, agent_id: str) -> None:
        self._windows.pop(agent_id, None)


class SeriesWindows:
    """The whole series of each test, bounded (:class:`~octotui.server.timeline.Timeline`): the last
    hour point by point, older points merged. ``dirty``: tests with points not stored yet."""

    def __init__(self, max_points: int = MAX_POINTS, fine_span: float = FINE_SPAN) -> None:
        self.max_points = max_points
        self.fine_span = fine_span
        self._series: dict[str, Timeline] = {}
        self.dirty: set[str] = set()

    def add(self, test_id: str, ts: float, rate: float, avg_ms: float, errors: int, active: int) -> None:
        series = self._series.get(test_id)
        if series is None:
            series = self._series[test_id] = Timeline(self.fine_span, max_points=self.max_points)
        series.add(ts, rate, avg_ms, errors, active)
        self.dirty.add(test_id)

    def put(self, test_id: str, width: float, coarse: int, packed: bytes) -> None:
        """Take a stored series back (start-up)."""
        self._series[test_id] = Timeline.unpack(width, coarse, packed, self.fine_span, self.max_points)

    def packed(self, test_id: str) -> tuple[float, int, bytes] | None:
        series = self._series.get(test_id)
        return None if series is None else series.pack()

    def __contains__(self, test_id: str) -> bool:
        return test_id in self._series

    def ids(self) -> list[str]:
        return list(self._series)

    def get(self, test_id: str) -> list[TestSeriesPoint]:
        series = self._series.get(test_id)
        return [] if series is None else points_out(series.points())

    def drop(self, test_id: str) -> None:
        self._series.pop(test_id, None)
        self.dirty.discard(test_id)

    def take(self, test_id: str) -> tuple[Timeline, bool] | None:
        """Remove a test's series and hand it over (with whether it had unsaved points)."""
        series = self._series.pop(test_id, None)
        dirty = test_id in self.dirty
        self.dirty.discard(test_id)
        return None if series is None else (series, dirty)

    def give_back(self, test_id: str, taken: tuple[Timeline, bool]) -> None:
        """Undo :meth:`take`."""
        self._series[test_id] = taken[0]
        if taken[1]:
            self.dirty.add(test_id)


def points_out(points: list[Point]) -> list[TestSeriesPoint]:
    """Timeline points as the wire lists them."""
    return [
        TestSeriesPoint.model_construct(ts=ts, rate=rate, avg_ms=avg, errors=errors, active=active)
        for ts, rate, avg, errors, active, _ in points
    ]


def poll_wait(least: float, most: float, asked: float | None = None) -> float:
    """How long a long poll waits: ``asked`` (capped at ``most``), else randomly between the two.

    Randomised so that agents started together do not all come back in the same second.
    """
    if asked is not None:
        return min(asked, most)
    return random.uniform(least, most)


def to_command(rec: CommandRec) -> Command:
    return Command(
        id=rec.id,
        kind=rec.kind,
        container_id=rec.container_id,
        test_id=rec.test_id,
        launch=rec.launch,
        grace_s=rec.grace_s,
    )


class CommandHub:
    """Queued commands per agent and the long polls waiting for them.

    A command stays queued until acknowledged. A poll hands out the commands not yet handed out,
    and again those handed out more than ``redeliver_after`` seconds ago (or all of them when the
    agent says its poll is ``fresh``, i.e. its first after a start): a redelivery keeps the id.
    """

    def __init__(self, redeliver_after: float) -> None:
        self.redeliver_after = redeliver_after
        self._queues: dict[str, dict[str, CommandRec]] = {}
        self._events: dict[str, asyncio.Event] = {}
        self._closed = False

    def close(self) -> None:
        """Answer every waiting poll now (empty) and every later one at once: the server stops."""
        self._closed = True
        for event in self._events.values():
            event.set()
        self._events.clear()

    def push(self, rec: CommandRec) -> None:
        self._queues.setdefault(rec.agent_id, {})[rec.id] = rec
        event = self._events.pop(rec.agent_id, None)
        if event is not None:
            event.set()

    def get(self, agent_id: str, command_id: str) -> CommandRec | None:
        return self._queues.get(agent_id, {}).get(command_id)

    def remove(self, agent_id: str, command_id: str) -> CommandRec | None:
        queue = self._queues.get(agent_id)
        return queue.pop(command_id, None) if queue else None

    def discard(self, command_id: str) -> CommandRec | None:
        """Take a command out by its id alone (acknowledged through another replica)."""
        for queue in self._queues.values():
            if (rec := queue.pop(command_id, None)) is not None:
                return rec
        return None

    def pending(self, agent_id: str) -> list[CommandRec]:
        return list(self._queues.get(agent_id, {}).values())

    def redeliver(self, agent_id: str, command_id: str) -> bool:
        """Make one queued command due again now (waking a waiting poll); False when it is not queued."""
        rec = self._queues.get(agent_id, {}).get(command_id)
        if rec is None:
            return False
        rec.delivered_at = None
        event = self._events.pop(agent_id, None)
        if event is not None:
            event.set()
        return True

    def reset_delivery(self, agent_id: str) -> None:
        """Make every queued command of ``agent_id`` due again (e.g. after it re-registered)."""
        for rec in self._queues.get(agent_id, {}).values():
            rec.delivered_at = None

    def drop_agent(self, agent_id: str) -> list[CommandRec]:
        event = self._events.pop(agent_id, None)
        if event is not None:
            event.set()
        return list(self._queues.pop(agent_id, {}).values())

    def _due(self, agent_id: str, now: float, fresh: bool) -> tuple[list[CommandRec], float | None]:
        due: list[CommandRec] = []
        next_due: float | None = None
        for rec in self._queues.get(agent_id, {}).values():
            if fresh or rec.delivered_at is None or now - rec.delivered_at >= self.redeliver_after:
                due.append(rec)
            else:
                at = rec.delivered_at + self.redeliver_after - now
                next_due = at if next_due is None else min(next_due, at)
        return due, next_due

    async def wait_while_connected(
        self, agent_id: str, wait_s: float, fresh: bool, receive: Callable[[], Awaitable[Any]]
    ) -> list[Command]:
        """:meth:`wait`, cut short (answering []) when the poll's client goes away.

        A poll whose connection is gone (a proxy's idle timeout, a network cut) must stop waiting:
        left waiting it would take the next command and answer it to nobody, and the agent's live
        poll would only get it at the redelivery, seconds later. ``receive`` is the request's ASGI
        receive (a request without a body still to read). The commands stay queued.
        """
        waiting = asyncio.ensure_future(self.wait(agent_id, wait_s, fresh=fresh))
        gone = asyncio.ensure_future(_client_gone(receive))
        try:
            await asyncio.wait({waiting, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not waiting.done():
                waiting.cancel()  # only asked: it is not done (nor "cancelled") before it runs again
        if waiting.done() and not waiting.cancelled():
            return waiting.result()
        return []  # the client went away: nothing was handed out

    async def wait(self, agent_id: str, wait_s: float, fresh: bool = False) -> list[Command]:
        """Commands due for ``agent_id``, at once if any, else as soon as one is queued, else [] after ``wait_s``."""
        deadline = time.monotonic() + wait_s
        while True:
            now = time.monotonic()
            due, next_due = self._due(agent_id, now, fresh)
            if due:
                for rec in due:
                    rec.delivered_at = now
                return [to_command(rec) for rec in due]
            remaining = deadline - now
            if remaining <= 0 or self._closed:
                return []
            event = self._events.get(agent_id)
            if event is None:
                event = self._events[agent_id] = asyncio.Event()
            wait_for = remaining if next_due is None else min(remaining, next_due)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout=max(wait_for, 0.001))


async def _client_gone(receive: Callable[[], Awaitable[Any]]) -> None:
    """Return once the client has gone (a request without a body still to read)."""
    while (await receive())["type"] != "http.disconnect":
        pass
