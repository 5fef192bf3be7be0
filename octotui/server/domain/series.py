"""A test's timeline (``GET /tests/{id}/series``), kept: the whole test, bounded by merging older
points (``timeline.py``), stored once it ended and every ``labels_save_interval`` while it runs (and
all at shutdown), so that it survives a restart. Ended tests' timelines leave memory once stored;
reading one then reads the store.
"""

from __future__ import annotations

import logging
import sqlite3
import time

from octotui.protocol import TestSeriesPoint
from octotui.server.domain.lifecycle import TEST_TERMINAL
from octotui.server.domain.state import ServerState
from octotui.server.hub import points_out
from octotui.server.records import TestRec
from octotui.server.tables import SeriesRow
from octotui.server.timeline import Timeline

log = logging.getLogger("octotui.server")


def load(s: ServerState, rows: list[SeriesRow]) -> None:
    """Take the stored timelines of the tests not ended back into memory (start-up)."""
    for test_id, width, coarse, packed in rows:
        s.series.put(test_id, width, coarse, packed)


def _ended(s: ServerState, test_id: str) -> bool:
    t = s.tests.get(test_id)
    return t is None or t.state in TEST_TERMINAL


async def save(s: ServerState, everything: bool = False) -> None:
    """Store the timelines of tests that ended, and of every test with new points when
    ``everything`` or when ``labels_save_interval`` passed; then forget those of ended tests.

    A write the store refuses as a whole (disk full, locked) keeps them unsaved for the next time.
    """
    now = time.monotonic()
    if everything or now - s.series_saved_at >= s.settings.labels_save_interval:
        s.series_saved_at = now
        everything = True
    due = [tid for tid in s.series.dirty if tid in s.tests and (everything or _ended(s, tid))]
    rows: list[SeriesRow] = []
    for tid in due:
        packed = s.series.packed(tid)
        if packed is not None:
            rows.append((tid, *packed))
    s.series.dirty.difference_update(due)
    if rows:
        try:
            await s.store.save_series(rows)
        except sqlite3.OperationalError:
            s.series.dirty.update(due)
            raise
        except Exception as exc:
            log.error("timelines of %d test(s) cannot be stored, left out until they change: %s", len(rows), exc)
    for tid in s.series.ids() if everything else due:
        if tid not in s.series.dirty and _ended(s, tid):
            s.series.drop(tid)


async def points(s: ServerState, t: TestRec) -> list[TestSeriesPoint]:
    """``t``'s whole timeline: from memory while it runs (or until stored), else from the store."""
    if t.id in s.series or t.state not in TEST_TERMINAL:
        return s.series.get(t.id)
    row = await s.store.series_of(t.id)
    if row is None:
        return []
    _, width, coarse, packed = row
    return points_out(Timeline.unpack(width, coarse, packed).points())
