"""The timelines of tests under way, in memory: the test's own (with its per-interval errors/s, 95th
and bytes/s), each label's, and each load generator's CPU and memory while it runs the test.

Each agent reports a container's labels cumulative since it started (``labelbook.py``): the
difference between what a (container, label) said at one point and at the previous one is exactly
what it did in between (counts, sums, bytes, and the histogram's counts, hence the interval's 95th).
Those differences add over the containers exactly, as the figures do.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from octotui.protocol import (
    GeneratorPoint,
    GeneratorSeries,
    LabelSeries,
    LabelSeriesPoint,
    TestSeriesPoint,
    histogram_percentile,
)
from octotui.server.hub import SeriesWindows
from octotui.server.labelbook import unpack
from octotui.server.timeline import LABEL_MAX_POINTS, GeneratorTimeline, LabelTimeline, Point, Timeline


def _none(x: float | None) -> float | None:
    return None if x is None or x != x else x


def points_out(points: list[Point]) -> list[TestSeriesPoint]:
    """A test's timeline points as the wire lists them."""
    return [
        TestSeriesPoint.model_construct(
            ts=ts,
            rate=rate,
            avg_ms=avg,
            errors=int(errors or 0),
            active=int(active or 0),
            error_rate=error_rate,
            p95_ms=_none(p95),
            received_bps=rx,
            sent_bps=tx,
        )
        for ts, rate, avg, errors, active, error_rate, p95, rx, tx, _ in points
    ]


def label_out(label: str, line: LabelTimeline) -> LabelSeries:
    return LabelSeries(
        label=label,
        points=[
            LabelSeriesPoint.model_construct(
                ts=ts, rate=rate, error_rate=er, avg_ms=avg, p95_ms=_none(p95), received_bps=rx, sent_bps=tx
            )
            for ts, rate, er, avg, p95, rx, tx, _ in line.points()
        ],
    )


def generator_out(agent_id: str, name: str, line: GeneratorTimeline) -> GeneratorSeries:
    return GeneratorSeries(
        agent_id=agent_id,
        agent_name=name,
        points=[
            GeneratorPoint.model_construct(ts=ts, cpu_percent=cpu, memory_percent=mem)
            for ts, cpu, mem, _ in line.points()
        ],
    )


class TestTimelines(SeriesWindows):
    """The tests' own timelines (:class:`SeriesWindows`) with the per-interval figures too."""

    __test__ = False  # not a pytest class

    def add(
        self,
        test_id: str,
        ts: float,
        rate: float,
        avg_ms: float,
        errors: int,
        active: int,
        error_rate: float = 0.0,
        p95_ms: float | None = None,
        received_bps: float = 0.0,
        sent_bps: float = 0.0,
    ) -> None:
        series = self._series.get(test_id)
        if series is None:
            series = self._series[test_id] = Timeline(self.fine_span, max_points=self.max_points)
        series.add(ts, rate, avg_ms, errors, active, error_rate, p95_ms, received_bps, sent_bps)
        self.dirty.add(test_id)

    def get(self, test_id: str) -> list[TestSeriesPoint]:
        series = self._series.get(test_id)
        return [] if series is None else points_out(series.points())

    def line(self, test_id: str) -> Timeline | None:
        return self._series.get(test_id)

    def last_ts(self, test_id: str) -> float | None:
        series = self._series.get(test_id)
        return None if series is None else series.last_ts()

    def add_raw(self, test_id: str, point: Point) -> None:
        """A point as another replica took it (``Timeline.add_raw``'s fields), when newer than the last."""
        series = self._series.get(test_id)
        if series is None:
            series = self._series[test_id] = Timeline(self.fine_span, max_points=self.max_points)
        if (last := series.last_ts()) is None or point[0] > last:
            series.add_raw(point)
            self.dirty.add(test_id)

    def restore(self, test_id: str, width: float, coarse: int, packed: bytes) -> None:
        """The stored timeline, with the points in memory newer than its last laid after it."""
        stored = Timeline.unpack(width, coarse, packed, self.fine_span, self.max_points)
        if (mem := self._series.get(test_id)) is not None:
            stored.extend_after(mem)
        self._series[test_id] = stored


class Interval:
    """One label's interval, summed over the containers: samples, errors, sum of ms, bytes, histogram."""

    __slots__ = ("changed", "errors", "hist", "received", "samples", "sent", "sum_ms")

    def __init__(self) -> None:
        self.changed = False  # a container reported new figures of it
        self.samples = 0
        self.errors = 0
        self.sum_ms = 0.0
        self.received = 0
        self.sent = 0
        self.hist: dict[int, int] = {}

    def point(self, ts: float, dt: float) -> Point:
        """The label's point (:class:`LabelTimeline`) over ``dt`` seconds (its weight)."""
        n = self.samples
        p95 = p95_of(self.hist) if n > 0 else math.nan
        return (
            ts,
            n / dt,
            self.errors / dt,
            self.sum_ms / n if n else 0.0,
            p95,
            self.received / dt,
            self.sent / dt,
            dt,
        )


def p95_of(hist: Mapping[int, int]) -> float:
    """The 95th of a histogram of differences (buckets that went down, a container replaced, left out)."""
    kept = {b: n for b, n in hist.items() if n > 0}
    return histogram_percentile(kept, 95) if kept else math.nan


def intervals(
    previous: Mapping[tuple[str, str], bytes],
    books: Iterable[tuple[str, Mapping[str, bytes]]],
    by_container: dict[str, Interval] | None = None,
) -> tuple[dict[str, Interval], dict[tuple[str, str], bytes]]:
    """What each label did since ``previous`` (the packed figures per (container, label) at the
    last point), summed over the containers' ``books``; and the figures of now, for the next time.
    With ``by_container``, what each container did too (its bytes, and whether it reported anything
    new), by container id.

    A (container, label) unchanged since (the same ``bytes``: a book replaces a label's only when it
    changed) adds nothing; a label seen for the first time adds all it says; one whose samples went
    down (never, from one container: cumulative) counts what it says now.
    """
    out: dict[str, Interval] = {}
    now: dict[tuple[str, str], bytes] = {}
    for cid, figures in books:
        mine = None if by_container is None else by_container.setdefault(cid, Interval())
        for label, blob in figures.items():
            key = (cid, label)
            now[key] = blob
            acc = out.get(label)
            if acc is None:
                acc = out[label] = Interval()
            old = previous.get(key)
            if old is blob or old == blob:
                continue
            acc.changed = True
            (n, err, total, _, _, rx, tx, _, _), buckets, counts = unpack(blob)
            hist = acc.hist
            if old is not None:
                (n0, err0, total0, _, _, rx0, tx0, _, _), b0, c0 = unpack(old)
                if n0 <= n:
                    n, err, total, rx, tx = n - n0, err - err0, total - total0, rx - rx0, tx - tx0
                    for b, c in zip(b0, c0, strict=True):
                        hist[b] = hist.get(b, 0) - c
            acc.samples += int(n)
            acc.errors += int(err)
            acc.sum_ms += total
            acc.received += int(rx)
            acc.sent += int(tx)
            if mine is not None:
                mine.changed = True
                mine.received += int(rx)
                mine.sent += int(tx)
            for b, c in zip(buckets, counts, strict=True):
                hist[b] = hist.get(b, 0) + c
    return out, now


#: A stored label's or generator's timeline takes at most this many points appended (chunks of the
#: points of each save) before it is stored whole again: reading it back replays at most that many.
#: Past half, it is stored whole when its turn comes: the fullest first, as many as make
#: ``WHOLE_SHARE`` times the points the save appends (at least one). A test's labels fill alike:
#: they are not all written whole at one save, and a save writes a few times the points that came
#: since the previous one, however fast they come.
LOG_MAX_POINTS = LABEL_MAX_POINTS
WHOLE_SHARE = 2
#: A label's timeline (``("label", label)``) or a generator's (``("generator", agent id)``).
LineKey = tuple[str, str]


@dataclass(slots=True)
class Log:
    """What the store holds of a timeline of a running test beyond its whole form (stored once, then
    at each ``LOG_MAX_POINTS`` points appended): the next chunk's number, the points in chunks, and
    the points added since the last save (the next chunk). A timeline without one is stored whole
    at the next save."""

    seq: int = 0
    logged: int = 0
    pending: array[float] = field(default_factory=lambda: array("d"))
    count: int = 0  # points in ``pending``


@dataclass(slots=True)
class Outgoing:
    """The points a lease holder added to a running test's timelines since its last publication
    (``domain/seriesshare.py``): ``prev`` is the test's timeline's last point before them (None:
    none), by which the others tell they missed none."""

    prev: float | None
    test: array[float] = field(default_factory=lambda: array("d"))
    lines: dict[LineKey, array[float]] = field(default_factory=dict)


@dataclass(slots=True)
class Spread:
    """A container's last report as the test's timeline spreads it: when its figures last changed
    (``since``), its samples and errors then, and the errors/s and bytes/s of that report's delta
    over the time it covers (held by the points until the next report, or 0 once it is overdue)."""

    since: float
    samples: int
    errors: int
    error_rate: float = 0.0
    received_bps: float = 0.0
    sent_bps: float = 0.0


@dataclass(slots=True)
class Sampled:
    """What a running test's previous point saw: its time, error count and labels' figures."""

    ts: float
    errors: int
    figures: dict[tuple[str, str], bytes] = field(default_factory=dict)
    #: When each label's last point was taken (a label's point waits for new figures of it).
    emitted: dict[str, float] = field(default_factory=dict)
    #: Each container's last report, by container id (the test's errors/s and bytes/s).
    spreads: dict[str, Spread] = field(default_factory=dict)


class ResultTimelines:
    """Per test under way: each label's timeline, each generator's, and the previous point's state.

    ``dirty``: tests with points not stored yet; ``restore``: tests under way when the server
    started, whose stored timelines are taken back (before what came since) at the next save;
    ``seed``: those same tests, whose first point after the start only notes the labels' figures
    (the books were taken back from the store: a difference with nothing would count the whole
    test so far as one interval).
    """

    def __init__(self) -> None:
        self.labels: dict[str, dict[str, LabelTimeline]] = {}
        self.generators: dict[str, dict[str, GeneratorTimeline]] = {}
        self.names: dict[str, dict[str, str]] = {}
        self.sampled: dict[str, Sampled] = {}
        self.dirty: set[str] = set()
        self.restore: set[str] = set()
        self.seed: set[str] = set()
        #: Per test, what the store holds of each timeline beyond its whole form (``Log``).
        self.logs: dict[str, dict[LineKey, Log]] = {}
        #: The tests known at the last full save: those gone since were deleted (their stored
        #: timelines are deleted too; ``domain/deletion.py`` deletes the rest of a test).
        self.known: set[str] = set()
        #: With replicas (``domain/seriesshare.py``): whether this one samples (holds the lease, and
        #: took over); the points it added since its last publication (None: it does not publish);
        #: and, on the others, the tests whose timelines missed points before the one at that ts.
        self.leading = False
        self.outgoing: dict[str, Outgoing] | None = None
        self.behind: dict[str, float] = {}
        #: When the last store of the timelines was asked (by a replica behind) or done on request.
        self.wanted_at = float("-inf")

    def __contains__(self, test_id: str) -> bool:
        return test_id in self.labels or test_id in self.generators

    def ids(self) -> list[str]:
        return list(self.labels.keys() | self.generators.keys())

    def add_label(self, test_id: str, label: str, point: Point) -> None:
        lines = self.labels.setdefault(test_id, {})
        line = lines.get(label)
        if line is None:
            line = lines[label] = LabelTimeline()
        line.add_raw(point)
        self._logged(test_id, ("label", label), point)
        self._out(test_id, ("label", label), point)
        self.dirty.add(test_id)

    def add_generator(self, test_id: str, agent_id: str, name: str, ts: float, cpu: float, memory: float) -> None:
        lines = self.generators.setdefault(test_id, {})
        line = lines.get(agent_id)
        if line is None:
            line = lines[agent_id] = GeneratorTimeline()
        if (last := line.last_ts()) is not None and ts <= last:
            return
        line.add_raw((ts, cpu, memory, 1))
        self._logged(test_id, ("generator", agent_id), (ts, cpu, memory, 1))
        self._out(test_id, ("generator", agent_id), (ts, cpu, memory, 1))
        self.names.setdefault(test_id, {})[agent_id] = name
        self.dirty.add(test_id)

    def opening(self, test_id: str, prev: float | None) -> None:
        """A point of ``test_id`` begins (its timeline's last point before: ``prev``): noted for the
        next publication, when this replica publishes."""
        if self.outgoing is not None and test_id not in self.outgoing:
            self.outgoing[test_id] = Outgoing(prev)

    def note_test(self, test_id: str, line: Timeline | None) -> None:
        """The test's own point just added to ``line``, for the next publication."""
        if self.outgoing is not None and (out := self.outgoing.get(test_id)) is not None and line is not None:
            out.test.extend(line.data[-line.FIELDS :])

    def _out(self, test_id: str, key: LineKey, point: Point) -> None:
        if self.outgoing is not None and (out := self.outgoing.get(test_id)) is not None:
            out.lines.setdefault(key, array("d")).extend(point)

    def _logged(self, test_id: str, key: LineKey, point: Point) -> None:
        """Note a point of a stored timeline, to append at the next save; past what a log takes
        (the store unreachable a long time), none: the timeline is stored whole instead."""
        logs = self.logs.get(test_id)
        log = None if logs is None else logs.get(key)
        if logs is None or log is None:
            return
        log.pending.extend(point)
        log.count += 1
        if log.logged + log.count > LOG_MAX_POINTS:
            del logs[key]

    def drop(self, test_id: str) -> None:
        for d in (self.labels, self.generators, self.names, self.sampled, self.logs, self.behind):
            d.pop(test_id, None)

        self.dirty.discard(test_id)
        self.restore.discard(test_id)
        self.seed.discard(test_id)
