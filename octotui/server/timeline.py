"""A test's whole timeline, bounded: the points of the last hour as they came (one a second), older
ones merged into buckets whose width doubles whenever the whole would pass ``max_points``.

A point is ``(ts, rate, avg_ms, errors, active)`` as ``GET /tests/{id}/series`` shows it: ``rate``
is hits/s at that moment, ``avg_ms`` and ``errors`` are the test's cumulative average and error
count, ``active`` the threads running. Merging keeps what the finer points said:

- ``ts``, ``avg_ms`` and ``errors``: the bucket's last point. Both figures are cumulative, so the last
  one is exact: the errors a merged point adds over the previous one are the sum of what its points
  added, and the average is the average over every sample up to it (weighted by samples).
- ``rate``: the mean of the points' rates (each point one interval), so the samples a bucket stands
  for (rate x its span) are kept.
- ``active``: the most threads any of its points saw.

A 24-hour test keeps 3,600 one-second points and ~1,400 one-minute ones (<= 5,000); a longer one
merges its older minutes by two, four...: never more than ``max_points``.

Points are packed (``array('d')``: six doubles a point, the last the count of points merged) to be
stored as one value; floats survive the round trip exactly, so a series read back equals the one
written.
"""

from __future__ import annotations

import math
from array import array
from collections import deque

#: (ts, rate, avg_ms, errors, active, points merged)
Point = tuple[float, float, float, int, int, int]
FIELDS = 6

#: Seconds of the newest points kept as they came, and the first width of older buckets.
FINE_SPAN = 3600.0
COARSE_WIDTH = 60.0
MAX_POINTS = 5000


def merge(a: Point, b: Point) -> Point:
    """``a`` and the later ``b`` as one point (see the module's docstring)."""
    n = a[5] + b[5]
    return (b[0], (a[1] * a[5] + b[1] * b[5]) / n, b[2], b[3], max(a[4], b[4]), n)


class Timeline:
    """One test's points: the newest ``fine_span`` seconds as they came, older ones merged."""

    __slots__ = ("coarse", "fine", "fine_span", "max_points", "width")

    def __init__(self, fine_span: float = FINE_SPAN, width: float = COARSE_WIDTH, max_points: int = MAX_POINTS) -> None:
        self.max_points = max(2, max_points)
        self.fine_span = fine_span
        self.width = width
        self.fine: deque[Point] = deque()
        self.coarse: list[Point] = []

    def __len__(self) -> int:
        return len(self.fine) + len(self.coarse)

    def add(self, ts: float, rate: float, avg_ms: float, errors: int, active: int) -> None:
        """Append a point (newer than the last); the oldest fine ones move into buckets."""
        self.fine.append((ts, rate, avg_ms, errors, active, 1))
        edge = ts - self.fine_span
        # More fine points than three quarters of the budget (points closer than a second, or a
        # small budget): the oldest go too, so that merged ones always have room.
        most = max(1, self.max_points * 3 // 4)
        while self.fine and (self.fine[0][0] < edge or len(self.fine) > most):
            self._into_coarse(self.fine.popleft())
        while len(self) > self.max_points and len(self.coarse) > 1:
            self._coarser()

    def _bucket(self, ts: float) -> float:
        return math.floor(ts / self.width)

    def _into_coarse(self, p: Point) -> None:
        if self.coarse and self._bucket(self.coarse[-1][0]) == self._bucket(p[0]):
            self.coarse[-1] = merge(self.coarse[-1], p)
        else:
            self.coarse.append(p)

    def _coarser(self) -> None:
        """Double the buckets' width and merge the older points again."""
        self.width *= 2
        old, self.coarse = self.coarse, []
        for p in old:
            self._into_coarse(p)

    def points(self) -> list[Point]:
        """Every point, oldest first."""
        return [*self.coarse, *self.fine]

    # --- stored form ---------------------------------------------------------------------------

    def pack(self) -> tuple[float, int, bytes]:
        """(bucket width, count of merged points, the points packed): what the store keeps."""
        packed = array("d")
        for p in self.points():
            packed.extend(p)
        return self.width, len(self.coarse), packed.tobytes()

    @classmethod
    def unpack(
        cls, width: float, coarse: int, packed: bytes, fine_span: float = FINE_SPAN, max_points: int = MAX_POINTS
    ) -> Timeline:
        """A timeline as :meth:`pack` left it."""
        t = cls(fine_span, width, max_points)
        values = array("d", packed)
        for i in range(0, len(values) - FIELDS + 1, FIELDS):
            ts, rate, avg, errors, active, n = values[i : i + FIELDS]
            point = (ts, rate, avg, int(errors), int(active), int(n))
            if i // FIELDS < coarse:
                t.coarse.append(point)
            else:
                t.fine.append(point)
        return t
