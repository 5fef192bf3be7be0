"""Tests' timelines across replicas (issue 14): every replica serves the same timeline of a running
test, and a takeover of the lease loses none of it.

The lease holder alone takes the points (``series.sample``, one a second) and stores them. Each
point it adds to a running test's timelines (the test's own, its labels', its generators') goes into
its next live publication (``replica/live.py``, one a second): per test, the points since the last
one, packed as the timelines hold them, with the test timeline's last point before them (``prev``).
The others add them with the same code (``Packed.add_raw``: merging depends only on the points), so
their timelines equal the holder's up to the publication in flight.

A replica whose last point is not ``prev`` missed some (it started mid-test, a publication was lost):
it adds what came anyway, notes the test as behind since the first point it got, asks the holder to
store its timelines now (``wanted``), and once the stored test timeline reaches that point (the
labels' and generators' are stored before it), takes the stored ones back with what it holds laid
after them (``series.restore``).

A replica that takes the lease first takes back the stored timelines of the tests it holds (the
union of both: nothing it missed, nothing the store lacks), each stored whole at its first save (a
replica without the lease has no ``logs``: one losing it forgets them); it forgets the previous
points' figures (its first point of each running test only notes them, as after a restart: no
interval counting the test so far), then samples. One losing the lease stops sampling and
publishing. A takeover loses the points of the seconds between the last publication and the first
point of the new holder (the lease's own delay: ``LEASE_EVERY`` and the loop's round).

Bytes: a running test with L labels and G generators publishes per second (L + 1) x 8 + G x 4 + 10
doubles, base64'd in JSON with the labels' names, zlib'd with the rest of the publication: 16
containers on 16 generators x 200 labels, 21 KB of JSON a second, ~3.3 KB zlib'd with the figures
of ``tests/test_seriesshare.py`` (random response times; at most the 21 KB).
"""

from __future__ import annotations

import base64
import logging
import time
from array import array
from typing import Any

from octotui.protocol import TERMINAL_TEST_STATES
from octotui.server.domain import series
from octotui.server.domain.state import ServerState
from octotui.server.timeline import GeneratorTimeline, LabelTimeline, Timeline

log = logging.getLogger("octotui.server")

#: Seconds between two saves a replica behind asks of the lease holder.
WANTED_EVERY = 2.0


def _b64(points: array[float]) -> str:
    return base64.b64encode(points.tobytes()).decode()


def _points(text: str, fields: int) -> list[tuple[float, ...]]:
    values = array("d", base64.b64decode(text, validate=True))
    if len(values) % fields:
        raise ValueError(f"{len(values)} values are not points of {fields}")
    return [tuple(values[i : i + fields]) for i in range(0, len(values), fields)]


def gather(s: ServerState) -> dict[str, Any] | None:
    """This replica's part of its publication: the holder's new points ({"points": {test id: [prev,
    test points, {label: points}, {agent id: [name, points]}]}}), or the tests a replica behind
    wants stored ({"wanted": [...]}); None: nothing."""
    tl = s.timelines
    out: dict[str, Any] = {}
    if tl.outgoing:
        pts: dict[str, Any] = {}
        for tid, o in tl.outgoing.items():
            labels = {key: _b64(p) for (kind, key), p in o.lines.items() if kind == "label"}
            names = tl.names.get(tid, {})
            gens = {key: [names.get(key, ""), _b64(p)] for (kind, key), p in o.lines.items() if kind == "generator"}
            pts[tid] = [o.prev, _b64(o.test), labels, gens]
        tl.outgoing = {}
        out["points"] = pts
    if tl.behind and not tl.leading:
        now = time.monotonic()
        if now - tl.wanted_at >= WANTED_EVERY:
            tl.wanted_at = now
            out["wanted"] = sorted(tl.behind)
    return out or None


def take(s: ServerState, data: dict[str, Any]) -> None:
    """Another replica's part of a publication (:func:`gather`) into this one's timelines."""
    tl = s.timelines
    if not isinstance(data, dict) or not isinstance(data.get("points") or {}, dict):
        log.warning("replica: a publication's timelines are not what this version reads: left out")
        return
    if data.get("wanted") and tl.leading:
        now = time.monotonic()
        if now - tl.wanted_at >= WANTED_EVERY:
            tl.wanted_at = now
            s.series_saved_at = float("-inf")  # the next save stores every running test's timelines
    if tl.leading:
        return  # the holder's own points are the truth (a publication of the previous holder, late)
    for tid, item in (data.get("points") or {}).items():
        try:
            _take_test(s, tid, *item)
        except (ValueError, TypeError) as exc:
            log.warning("replica: points of test %s not taken (%s): reading the stored ones", tid, exc)
            tl.behind[tid] = max(tl.behind.get(tid, 0.0), time.time())


def _take_test(
    s: ServerState, tid: str, prev: float | None, test: str, labels: dict[str, str], gens: dict[str, list[str]]
) -> None:
    tl = s.timelines
    t = s.tests.get(tid)
    if t is None or (t.state in TERMINAL_TEST_STATES and tid not in s.series):
        return  # not read here yet (caught up from the store: see below), or ended and stored
    points = _points(test, Timeline.FIELDS)
    label_points = {label: _points(p, LabelTimeline.FIELDS) for label, p in labels.items()}
    gen_points = {aid: (str(name), _points(p, GeneratorTimeline.FIELDS)) for aid, (name, p) in gens.items()}
    last = s.series.last_ts(tid)
    if prev is not None and (last is None or last < prev) and points:
        tl.behind[tid] = max(tl.behind.get(tid, 0.0), points[0][0])  # missed those before
    for p in points:
        s.series.add_raw(tid, p)
    for label, pts in label_points.items():
        line = tl.labels.get(tid, {}).get(label)
        for p in pts:
            if line is None or (line.last_ts() or float("-inf")) < p[0]:
                tl.add_label(tid, label, p)
                line = tl.labels[tid][label]
    for aid, (name, pts) in gen_points.items():
        for ts, cpu, mem, _ in pts:
            tl.add_generator(tid, aid, name, ts, cpu, mem)
    # Stored by the holder: nothing for this one to write (a takeover marks them again).
    s.series.dirty.discard(tid)
    tl.dirty.discard(tid)
    s.feed.touch("test", tid)


async def follow(s: ServerState) -> None:
    """Each round of the background loop, before the tick: take over (or give up) the sampling as
    the lease comes (or goes); a replica behind takes the stored timelines back once they reach
    the points it got."""
    if s.replica is None:
        return
    tl = s.timelines
    leader = s.replica.leader
    if leader and not tl.leading:
        await _take_over(s)
    elif not leader and tl.leading:
        tl.leading = False
        tl.outgoing = None
        tl.logs.clear()  # the next holder writes the store
        tl.sampled.clear()
    if not tl.leading and tl.behind:
        await _catch_up(s)


async def _take_over(s: ServerState) -> None:
    tl = s.timelines
    held = set(s.series.ids()) | set(tl.ids())
    running = {tid for tid, t in s.tests.items() if t.state not in TERMINAL_TEST_STATES}
    for tid in sorted(held | running):
        # A test with logs is one this replica stores already (it had no lease before: alone on the
        # database, starting): the others' are taken back, each stored whole at the first save.
        if tid in s.tests and tid not in tl.logs:
            await series.restore(s, tid)
    tl.sampled.clear()
    tl.seed.update(running)  # the first point of each only notes its labels' figures
    tl.behind.clear()
    s.series.dirty.update(tid for tid in s.series.ids() if tid in s.tests)
    tl.dirty.update(tid for tid in tl.ids() if tid in s.tests)
    tl.outgoing = {}
    tl.leading = True
    log.info("replica: takes the timelines of %d test(s) on from here", len(running))


async def _catch_up(s: ServerState) -> None:
    tl = s.timelines
    for tid, since in list(tl.behind.items()):
        if tid not in s.tests:
            tl.behind.pop(tid, None)
            continue
        row = await s.store.series_of(tid)
        if row is None:
            continue
        stored = Timeline.unpack(*row[1:])
        if (stored.last_ts() or float("-inf")) < since:
            continue  # not stored so far yet: asked (``wanted``)
        await series.restore(s, tid)
        if tl.behind.get(tid) == since:
            del tl.behind[tid]
        s.series.dirty.discard(tid)
        tl.dirty.discard(tid)
        s.feed.touch("test", tid)
