"""Timelines kept whole and bounded: the points of the newest ``fine_span`` seconds as they came (one
a second), older ones merged into buckets whose width doubles whenever the whole would pass
``max_points``.

Three kinds, one algorithm (:class:`Packed`), each with its own point and merge:

- :class:`Timeline`, a test's (``GET /tests/{id}/series``): ``(ts, rate, avg_ms, errors, active,
  error_rate, p95_ms, received_bps, sent_bps, n)``. ``rate`` is hits/s at that moment, ``avg_ms``
  and ``errors`` the test's cumulative average and error count, ``active`` the threads running;
  ``error_rate``, ``p95_ms`` and the bytes per second are the interval's own.
- :class:`LabelTimeline`, one label's: ``(ts, rate, error_rate, avg_ms, p95_ms, received_bps,
  sent_bps, n)``, every figure the interval's own.
- :class:`GeneratorTimeline`, one agent's host during a test: ``(ts, cpu_percent, memory_percent, n)``.

``n`` is the count of points merged (a label's: the seconds its points stand for, as a label's
point is taken when new figures of it come, once a heartbeat). Merging keeps what the finer
points said (means weighted by ``n``):

- ``ts``: the bucket's last point's; cumulative figures (the test's ``avg_ms`` and ``errors``): the
  last one, exact (the average over every sample up to it; the errors it adds are the sum of its
  points' additions).
- per-second figures (rates, bytes/s, CPU and memory %): the mean of the points' (each point one
  interval), so that what a bucket stands for (rate x its span) is kept.
- an interval's average (labels): the mean weighted by the samples of each point.
- ``p95_ms``: the highest of the points' (an upper bound of the bucket's true 95th: above the
  highest of the parts' 95ths lie at most 5 % of each part's samples, so at most 5 % of all).
- ``active``: the most threads any of its points saw.

A 24-hour test keeps 3,600 one-second points and ~1,400 one-minute ones (<= 5,000); a longer one
merges its older minutes by two, four...: never more than ``max_points``.

Points live in one ``array('d')`` per timeline (8 bytes a field, no Python object per point: 200
labels x 1,000 points of 8 fields are 12.8 MB), stored as they are (a header ``[-1, fields]``, then
the points; a timeline stored before the header, six fields a point, is read as such), and the
points added since stored as they came (:meth:`Packed.pack_points`, replayed by :meth:`Packed.replay`). Floats
survive the round trip exactly, so a timeline read back equals the one written. A missing value
(``p95_ms`` of an interval without samples) is NaN inside, None outside.
"""

from __future__ import annotations

import math
from array import array
from typing import Any, ClassVar, Self

NAN = math.nan
#: A test's point, as :meth:`Timeline.points` gives it (see the module's docstring).
Point = tuple[Any, ...]

#: Seconds of the newest points kept as they came, and the first width of older buckets.
FINE_SPAN = 3600.0
COARSE_WIDTH = 60.0
MAX_POINTS = 5000
#: A label's and a generator's timeline: the last 10 minutes one a second, at most 1,000 points
#: (a 24-hour test: 600 one-second points and ~360 four-minute buckets per label).
LABEL_FINE_SPAN = 600.0
LABEL_MAX_POINTS = 1000

_MARK = -1.0  # the first double of a stored timeline with a header (a ts is never negative)


def _mean(a: Point, b: Point, i: int, na: float, nb: float) -> float:
    return float((a[i] * na + b[i] * nb) / (na + nb))


def _top(x: float, y: float) -> float:
    """The higher of two values, NaN (none) losing to any."""
    if math.isnan(x):
        return y
    if math.isnan(y):
        return x
    return max(x, y)


class Packed:
    """One timeline's points in one ``array('d')``: the merged (coarse) ones first, then the newest
    as they came. Subclasses say how many fields a point has and how two merge."""

    FIELDS: ClassVar[int] = 2
    __slots__ = ("coarse", "data", "fine_span", "max_points", "width")

    def __init__(self, fine_span: float = FINE_SPAN, width: float = COARSE_WIDTH, max_points: int = MAX_POINTS) -> None:
        self.max_points = max(2, max_points)
        self.fine_span = fine_span
        self.width = width
        self.data = array("d")
        self.coarse = 0  # points merged, at the front

    @staticmethod
    def merge(a: Point, b: Point) -> Point:
        """``a`` and the later ``b`` as one point."""
        raise NotImplementedError

    @classmethod
    def upgrade(cls, values: Point) -> Point:
        """A point stored with fewer fields (an older server's) in this kind's fields."""
        raise ValueError(f"a stored point of {len(values)} fields is not a {cls.__name__}'s ({cls.FIELDS})")

    def __len__(self) -> int:
        return len(self.data) // self.FIELDS

    @property
    def fine_count(self) -> int:
        return len(self) - self.coarse

    def _raw(self, i: int) -> Point:
        f = self.FIELDS
        return tuple(self.data[i * f : (i + 1) * f])

    def last_ts(self) -> float | None:
        return self.data[-self.FIELDS] if self.data else None

    def add_raw(self, values: Point) -> None:
        """Append a point (its fields, ``n`` last; newer than the last); the oldest fine ones move
        into buckets, and buckets widen while the whole passes ``max_points``."""
        self.data.extend(values)
        edge = values[0] - self.fine_span
        # More fine points than three quarters of the budget (points closer than a second, or a
        # small budget): the oldest go too, so that merged ones always have room.
        most = max(1, self.max_points * 3 // 4)
        f = self.FIELDS
        while self.fine_count and (self.data[self.coarse * f] < edge or self.fine_count > most):
            self._into_coarse()
        while len(self) > self.max_points and self.coarse > 1:
            self._coarser()

    def _bucket(self, ts: float) -> float:
        return math.floor(ts / self.width)

    def _into_coarse(self) -> None:
        """The oldest fine point into the last bucket (same bucket) or as a new one."""
        f, c = self.FIELDS, self.coarse
        if c and self._bucket(self.data[(c - 1) * f]) == self._bucket(self.data[c * f]):
            self.data[(c - 1) * f : c * f] = array("d", self.merge(self._raw(c - 1), self._raw(c)))
            del self.data[c * f : (c + 1) * f]
        else:
            self.coarse += 1

    def _coarser(self) -> None:
        """Double the buckets' width and merge the older points again."""
        self.width *= 2
        f = self.FIELDS
        merged: list[Point] = []
        for i in range(self.coarse):
            p = self._raw(i)
            if merged and self._bucket(merged[-1][0]) == self._bucket(p[0]):
                merged[-1] = self.merge(merged[-1], p)
            else:
                merged.append(p)
        head = array("d")
        for p in merged:
            head.extend(p)
        self.data = head + self.data[self.coarse * f :]
        self.coarse = len(merged)

    def points(self) -> list[Point]:
        """Every point, oldest first (NaN as None)."""
        f = self.FIELDS
        values = self.data.tolist()
        return [tuple(None if v != v else v for v in values[i : i + f]) for i in range(0, len(values), f)]

    def thinned(self, most: int) -> list[Point]:
        """At most ``most`` points (NaN as None): runs of consecutive points merged as buckets are
        (what a chart a few hundred pixels wide can show of a long timeline)."""
        n = len(self)
        k = max(1, -(-n // max(1, most)))
        if k == 1:
            return self.points()
        f = self.FIELDS
        values = self.data.tolist()
        step = k * f
        out = []
        for start in range(0, len(values), step):
            group = [tuple(values[i : i + f]) for i in range(start, min(start + step, len(values)), f)]
            p = self.merge_group(group)
            out.append(tuple(None if v != v else v for v in p))
        return out

    @classmethod
    def merge_group(cls, group: list[Point]) -> Point:
        """Consecutive points as one (as :meth:`merge` would, one after the other)."""
        p = group[0]
        for q in group[1:]:
            p = cls.merge(p, q)
        return p

    def extend_after(self, other: Packed) -> None:
        """Append ``other``'s points newer than this one's last (a timeline taken back from the
        store, then what came since: after a restart mid-test)."""
        last = self.last_ts()
        for i in range(len(other)):
            p = other._raw(i)
            if last is None or p[0] > last:
                self.add_raw(p)

    # --- stored form ---------------------------------------------------------------------------

    def pack(self) -> tuple[float, int, bytes]:
        """(bucket width, count of merged points, the points packed): what the store keeps."""
        return self.width, self.coarse, array("d", (_MARK, float(self.FIELDS))).tobytes() + self.data.tobytes()

    @classmethod
    def pack_points(cls, points: array[float]) -> bytes:
        """Points as they came (``add_raw``'s, one after the other), packed as :meth:`pack` packs
        them: what the store appends to a timeline stored already (see :meth:`replay`)."""
        return array("d", (_MARK, float(cls.FIELDS))).tobytes() + points.tobytes()

    def replay(self, packed: bytes) -> None:
        """Add the points of :meth:`pack_points` as they came: a timeline stored, then the points
        added since, read back equal to the one in memory (merging depends only on them)."""
        values = array("d", packed)
        fields = self.FIELDS
        if len(values) >= 2 and values[0] == _MARK:
            fields = int(values[1])
            del values[:2]
        for i in range(0, len(values) - fields + 1, fields):
            p = tuple(values[i : i + fields])
            self.add_raw(p if fields == self.FIELDS else self.upgrade(p))

    @classmethod
    def unpack(
        cls, width: float, coarse: int, packed: bytes, fine_span: float | None = None, max_points: int | None = None
    ) -> Self:
        """A timeline as :meth:`pack` left it (or an older server's six-field test timeline)."""
        kind = cls.__new__(cls)
        defaults = cls()
        Packed.__init__(
            kind,
            defaults.fine_span if fine_span is None else fine_span,
            width,
            defaults.max_points if max_points is None else max_points,
        )
        values = array("d", packed)
        fields = 6
        if len(values) >= 2 and values[0] == _MARK:
            fields = int(values[1])
            del values[:2]
        if fields == cls.FIELDS:
            kind.data = values
        else:
            for i in range(0, len(values) - fields + 1, fields):
                kind.data.extend(cls.upgrade(tuple(values[i : i + fields])))
        kind.coarse = min(coarse, len(kind))
        return kind


class Timeline(Packed):
    """A test's timeline (see the module's docstring)."""

    FIELDS = 10
    __slots__ = ()

    def add(
        self,
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
        p95 = NAN if p95_ms is None else p95_ms
        self.add_raw((ts, rate, avg_ms, errors, active, error_rate, p95, received_bps, sent_bps, 1))

    @staticmethod
    def merge(a: Point, b: Point) -> Point:
        na, nb = a[9], b[9]
        return (
            b[0],
            _mean(a, b, 1, na, nb),
            b[2],
            b[3],
            max(a[4], b[4]),
            _mean(a, b, 5, na, nb),
            _top(a[6], b[6]),
            _mean(a, b, 7, na, nb),
            _mean(a, b, 8, na, nb),
            na + nb,
        )

    @classmethod
    def upgrade(cls, values: Point) -> Point:
        if len(values) != 6:
            return super().upgrade(values)
        ts, rate, avg, errors, active, n = values
        return (ts, rate, avg, errors, active, 0.0, NAN, 0.0, 0.0, n)

    @classmethod
    def unpack(
        cls,
        width: float,
        coarse: int,
        packed: bytes,
        fine_span: float | None = FINE_SPAN,
        max_points: int | None = MAX_POINTS,
    ) -> Self:
        return super().unpack(width, coarse, packed, fine_span, max_points)


class LabelTimeline(Packed):
    """One label's timeline (see the module's docstring)."""

    FIELDS = 8
    __slots__ = ()

    def __init__(
        self, fine_span: float = LABEL_FINE_SPAN, width: float = COARSE_WIDTH, max_points: int = LABEL_MAX_POINTS
    ) -> None:
        super().__init__(fine_span, width, max_points)

    @staticmethod
    def merge(a: Point, b: Point) -> Point:
        na, nb = a[7], b[7]
        wa, wb = a[1] * na, b[1] * nb  # samples of each (rate x intervals)
        avg = (a[3] * wa + b[3] * wb) / (wa + wb) if wa + wb > 0 else 0.0
        return (
            b[0],
            _mean(a, b, 1, na, nb),
            _mean(a, b, 2, na, nb),
            avg,
            _top(a[4], b[4]),
            _mean(a, b, 5, na, nb),
            _mean(a, b, 6, na, nb),
            na + nb,
        )

    @classmethod
    def merge_group(cls, group: list[Point]) -> Point:
        # One pass (the report thins every label's timeline): as merge, pairwise.
        n = rate = er = rx = tx = weighted = samples = 0.0
        top = NAN
        for _, r, e, avg, p95, x, y, m in group:
            n += m
            rate += r * m
            er += e * m
            rx += x * m
            tx += y * m
            weighted += avg * r * m
            samples += r * m
            if p95 == p95 and not p95 <= top:
                top = p95
        return (group[-1][0], rate / n, er / n, weighted / samples if samples > 0 else 0.0, top, rx / n, tx / n, n)


class GeneratorTimeline(Packed):
    """One load generator's CPU and memory during a test (see the module's docstring)."""

    FIELDS = 4
    __slots__ = ()

    def __init__(
        self, fine_span: float = LABEL_FINE_SPAN, width: float = COARSE_WIDTH, max_points: int = LABEL_MAX_POINTS
    ) -> None:
        super().__init__(fine_span, width, max_points)

    @staticmethod
    def merge(a: Point, b: Point) -> Point:
        na, nb = a[3], b[3]
        return (b[0], _mean(a, b, 1, na, nb), _mean(a, b, 2, na, nb), na + nb)
