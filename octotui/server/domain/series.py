"""A test's timelines (``GET /tests/{id}/series``), kept: the whole test's, each label's and each
load generator's CPU and memory, bounded by merging older points (``timeline.py``), stored once the
test ended and every ``labels_save_interval`` while it runs (and all at shutdown), so that they
survive a restart. Ended tests' timelines leave memory once stored; reading one then reads the store.

While a test runs, a label's or generator's timeline is appended to: a save writes the points that
came since the previous one (a chunk), and the timeline whole now and then (``timelines.Log``: when
its chunks pass half of 1,000 points, in turns; at 1,000; as the test ends). Reading one replays its
chunks after its whole form: merging depends only on the points, so it reads back as memory had it.

Each point (one a second, ``ticks.py``) takes the test's figures of now, and what each label did
since the previous point: the difference of the containers' cumulative per-label figures
(``timelines.intervals``), exact over the containers: hits/s, errors/s, the interval's average and
95th, bytes/s, per label and for the whole test. A label gets a point when new figures of it came
(over the time since its previous one); the test's errors/s and bytes/s, a point every second, are
each container's last report spread over the time it covers, held until its next (``_spreads``). A
generator's point is its agent's last host sample, while it runs a container of the test.

Bounds: the test's timeline <= ``series_max_points`` (5,000) points; each label's and each
generator's <= 1,000 (the last 10 minutes one a second, older ones merged by minute, then by two,
four... minutes). A 24-hour test with 200 labels (the most an agent reports, ``MAX_LABELS``, plus
the "other" one) keeps at most 201 x 1,000 x 64 bytes = 12.9 MB of label points, in memory while
it runs and in the store after; a save of it while it runs writes about 1 MB (12.9 MB whole).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from array import array

from octotui.protocol import (
    TERMINAL_CONTAINER_STATES as TERMINAL,
)
from octotui.protocol import (
    TERMINAL_TEST_STATES as TEST_TERMINAL,
)
from octotui.protocol import GeneratorSeries, LabelSeries, TestSeriesPoint
from octotui.server.domain.state import ServerState
from octotui.server.records import ContainerRec, TestRec
from octotui.server.results import live_results
from octotui.server.store_results import ChunkRow, GeneratorSeriesRow, LabelSeriesRow
from octotui.server.tables import SeriesRow
from octotui.server.timeline import GeneratorTimeline, LabelTimeline, Packed, Timeline
from octotui.server.timelines import (
    LOG_MAX_POINTS,
    WHOLE_SHARE,
    Interval,
    LineKey,
    Log,
    ResultTimelines,
    Sampled,
    Spread,
    generator_out,
    intervals,
    label_out,
    p95_of,
    points_out,
)

log = logging.getLogger("octotui.server")

#: The interval assumed for a test's first point.
FIRST_INTERVAL = 1.0
#: Seconds a label may go without new figures before it gets a point of none.
LABEL_IDLE = 10.0


def load(s: ServerState, rows: list[SeriesRow]) -> None:
    """Take the stored timelines of the tests not ended back into memory (start-up); their labels'
    and generators' are taken back at the first save (:func:`save`)."""
    for test_id, width, coarse, packed in rows:
        s.series.put(test_id, width, coarse, packed)
        s.timelines.restore.add(test_id)
        s.timelines.seed.add(test_id)


def sample(s: ServerState, t: TestRec, cs: list[ContainerRec], now: float, least: float = 0.0) -> None:
    """One point of a running test's timelines at ``now`` (the test's, its labels', its generators'),
    over the time since the previous point (at least ``least`` seconds)."""
    r = live_results(cs)
    tl = s.timelines
    prev = tl.sampled.get(t.id)
    books = [(c.id, book.figures) for c in cs if (book := s.labels.get(c.id)) is not None]
    if prev is not None and now <= prev.ts:
        return
    tl.opening(t.id, s.series.last_ts(t.id))  # published to the other replicas (``seriesshare.py``)
    if prev is None and t.id in tl.seed:
        tl.seed.discard(t.id)
        marks = {c.id: Spread(now, c.figures.samples, c.figures.errors) for c in cs if c.figures is not None}
        tl.sampled[t.id] = Sampled(now, r.errors, intervals({}, books)[1], spreads=marks)
        s.series.add(t.id, now, r.throughput, r.avg_ms, r.errors, r.active)
        tl.note_test(t.id, s.series.line(t.id))
        return
    dt = max(now - prev.ts if prev is not None else FIRST_INTERVAL, least)
    by_container: dict[str, Interval] = {}
    per_label, figures = intervals(prev.figures if prev is not None else {}, books, by_container)
    emitted = prev.emitted if prev is not None else {}
    hold = max(LABEL_IDLE, 2 * s.settings.heartbeat_interval)
    spreads, (error_rate, received_bps, sent_bps) = _spreads(
        cs, prev.spreads if prev is not None else {}, by_container, now, dt, least, hold
    )
    tl.sampled[t.id] = Sampled(now, r.errors, figures, emitted, spreads)
    whole = Interval()
    for label, iv in per_label.items():
        # A label's point when new figures of it came (over the time since its previous point:
        # an agent reports a label once a heartbeat, not each second), or after LABEL_IDLE s
        # without any (its samples stopped: a point of none).
        last = emitted.get(label)
        if iv.changed or last is None or now - last >= LABEL_IDLE:
            tl.add_label(t.id, label, iv.point(now, max(now - last, least) if last is not None else dt))
            emitted[label] = now
        whole.samples += iv.samples
        for b, n in iv.hist.items():
            whole.hist[b] = whole.hist.get(b, 0) + n
    p95 = p95_of(whole.hist) if whole.samples > 0 else None
    # Errors/s and bytes/s: each container's last report spread over the time it covers, held until
    # its next one (a point a second, a report a heartbeat: not 0, then the whole interval's in one).
    s.series.add(
        t.id,
        now,
        r.throughput,
        r.avg_ms,
        r.errors,
        r.active,
        error_rate,
        None if p95 is None or p95 != p95 else p95,
        received_bps,
        sent_bps,
    )
    tl.note_test(t.id, s.series.line(t.id))
    for agent_id in sorted({c.agent_id for c in cs if c.state not in TERMINAL}):
        a = s.agents.get(agent_id)
        if a is not None and a.host is not None:
            tl.add_generator(t.id, agent_id, a.name, now, a.host.cpu_percent, a.host.memory_percent)


def _spreads(
    cs: list[ContainerRec],
    before: dict[str, Spread],
    by_container: dict[str, Interval],
    now: float,
    dt: float,
    least: float,
    hold: float,
) -> tuple[dict[str, Spread], tuple[float, float, float]]:
    """Each container's last report (:class:`Spread`) as of ``now``, and the test's errors/s,
    received and sent bytes/s: the sum of each container's last report's rates, over the time since
    its figures changed before (``dt``, the time since the previous point, for one not seen yet).
    A report is held ``hold`` seconds at most (two heartbeats: its agent stopped reporting, or its
    samples stopped), and not at all once its container ended: then it adds nothing."""
    out: dict[str, Spread] = {}
    errors = received = sent = 0.0
    for c in cs:
        f = c.figures
        samples, errs = (f.samples, f.errors) if f is not None else (0, 0)
        old = before.get(c.id)
        iv = by_container.get(c.id)
        if old is not None and (iv is None or not iv.changed) and (samples, errs) == (old.samples, old.errors):
            out[c.id] = old
            if now - old.since < hold and c.state not in TERMINAL:
                errors += old.error_rate
                received += old.received_bps
                sent += old.sent_bps
            continue
        if f is None and iv is None:
            continue
        span = max(now - old.since, least) if old is not None else dt
        new_errors = errs - old.errors if old is not None and old.samples <= samples else errs
        rx, tx = (iv.received, iv.sent) if iv is not None else (0, 0)
        x = out[c.id] = Spread(now, samples, errs, max(0, new_errors) / span, rx / span, tx / span)
        errors += x.error_rate
        received += x.received_bps
        sent += x.sent_bps
    return out, (errors, received, sent)


def leading(s: ServerState) -> bool:
    """True when this server takes the points of tests' timelines: alone, or the replica holding the
    lease once it took over (``seriesshare.py``); the others take them from it."""
    return s.replica is None or s.timelines.leading


def last_point(s: ServerState, t: TestRec, cs: list[ContainerRec], now: float) -> None:
    """A test's last point as it ends (``lifecycle``, before its labels leave memory): what its
    labels did since the previous point (the JTL's tail, a test shorter than a point) is kept.
    Over at least one second, as every point stands for about one."""
    if not leading(s):
        return
    if not any(c.figures is not None or c.id in s.labels for c in cs):
        return
    s.timelines.seed.discard(t.id)
    sample(s, t, cs, now, least=FIRST_INTERVAL)


def _ended(s: ServerState, test_id: str) -> bool:
    t = s.tests.get(test_id)
    return t is None or t.state in TEST_TERMINAL


def _generator_blob(line: GeneratorTimeline) -> bytes:
    """A generator's points as stored: the count of merged points first (the table has no column)."""
    _, coarse, packed = line.pack()
    return array("d", (float(coarse),)).tobytes() + packed


def _generator_line(width: float, blob: bytes, chunks: list[bytes]) -> GeneratorTimeline:
    coarse = int(array("d", blob[:8])[0]) if len(blob) >= 8 else 0
    line = GeneratorTimeline.unpack(width, coarse, blob[8:])
    for chunk in chunks:
        line.replay(chunk)
    return line


def _label_line(width: float, coarse: int, packed: bytes, chunks: list[bytes]) -> LabelTimeline:
    line = LabelTimeline.unpack(width, coarse, packed)
    for chunk in chunks:
        line.replay(chunk)
    return line


def _wholes(logs: dict[LineKey, Log], lines: list[tuple[LineKey, int]], ended: bool) -> set[LineKey]:
    """The timelines of a test (key, points) that a save stores whole: every one as the test ends;
    else those not stored yet or whose log is full, and of those whose log passed half, the fullest,
    up to twice as many points as the others append (at least one): the others are appended to."""
    if ended:
        return {key for key, _ in lines}
    out: set[LineKey] = set()
    half: list[tuple[int, int, LineKey]] = []
    appended = 0
    for key, size in lines:
        log = logs.get(key)
        if log is None or log.logged + log.count > LOG_MAX_POINTS:
            out.add(key)
            continue
        appended += log.count
        if log.logged + log.count > LOG_MAX_POINTS // 2:
            half.append((-(log.logged + log.count), size, key))
    budget = WHOLE_SHARE * appended
    for _, size, key in sorted(half):
        if budget <= 0:
            break
        out.add(key)
        budget -= size
    return out


def _to_store(logs: dict[LineKey, Log], key: LineKey, line: Packed, whole: bool) -> tuple[int, bytes] | None:
    """What a save writes of a timeline: None when whole (appending starts again from there), else
    (chunk number, the points added since the previous save; none: nothing to write)."""
    log = logs.get(key)
    if log is None or whole:
        logs[key] = Log()
        return None
    if not log.count:
        return log.seq, b""
    logs[key] = Log(log.seq + 1, log.logged + log.count)
    return log.seq, line.pack_points(log.pending)


def _unsaved(tl: ResultTimelines, before: dict[str, dict[LineKey, Log]]) -> None:
    """A save refused as a whole: each timeline's log as before it, with the points added since."""
    for tid, old in before.items():
        logs = tl.logs.get(tid)
        if logs is None:
            continue
        for key, log in list(logs.items()):
            was = old.get(key)
            if was is None:
                del logs[key]  # stored whole next time
            elif was is not log:
                was.pending.extend(log.pending)
                was.count += log.count
                logs[key] = was


async def _restore(s: ServerState) -> None:
    """Take back the stored label and generator timelines of tests under way at start-up, with the
    points taken since laid after them."""
    for tid in list(s.timelines.restore):
        await restore(s, tid, test_line=False)


async def restore(s: ServerState, tid: str, test_line: bool = True) -> None:
    """Take back a test's stored timelines (its own too with ``test_line``), with the points in
    memory newer than each one's last laid after it; each is stored whole at the next save."""
    tl = s.timelines
    tl.restore.discard(tid)
    if test_line and (row := await s.store.series_of(tid)) is not None:
        s.series.restore(tid, *row[1:])
    lines = tl.labels.setdefault(tid, {})
    tl.logs.pop(tid, None)  # stored whole at the next save
    for _, label, width, coarse, packed, chunks in await s.store.label_series_of(tid):
        line = _label_line(width, coarse, packed, chunks)
        if (mem := lines.get(label)) is not None:
            line.extend_after(mem)
        lines[label] = line
    gens = tl.generators.setdefault(tid, {})
    for _, agent_id, name, width, blob, chunks in await s.store.generator_series_of(tid):
        g = _generator_line(width, blob, chunks)
        if (mem_g := gens.get(agent_id)) is not None:
            g.extend_after(mem_g)
        gens[agent_id] = g
        tl.names.setdefault(tid, {}).setdefault(agent_id, name)


async def save(s: ServerState, everything: bool = False) -> None:
    """Store the timelines of tests that ended, and of every test with new points when
    ``everything`` or when ``labels_save_interval`` passed; then forget those of ended tests.

    A write the store refuses as a whole (disk full, locked) keeps them unsaved for the next time.
    """
    if s.timelines.restore:
        await _restore(s)
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
    tl = s.timelines
    due_more = [tid for tid in tl.dirty if tid in s.tests and (everything or _ended(s, tid))]
    label_rows: list[LabelSeriesRow] = []
    generator_rows: list[GeneratorSeriesRow] = []
    label_chunks: list[ChunkRow] = []
    generator_chunks: list[ChunkRow] = []
    before = {tid: dict(tl.logs.get(tid, {})) for tid in due_more}
    for tid in due_more:
        # Appended to while the test runs (only the points since the previous save); whole as it ends.
        logs = tl.logs.setdefault(tid, {})
        keyed: list[tuple[LineKey, int]] = [(("label", x), len(line)) for x, line in tl.labels.get(tid, {}).items()]
        keyed += [(("generator", x), len(g)) for x, g in tl.generators.get(tid, {}).items()]
        whole = _wholes(logs, keyed, _ended(s, tid))
        for label, line in tl.labels.get(tid, {}).items():
            if (chunk := _to_store(logs, ("label", label), line, ("label", label) in whole)) is None:
                label_rows.append((tid, label, *line.pack()))
            elif chunk[1]:
                label_chunks.append((tid, label, *chunk))
        names = tl.names.get(tid, {})
        for agent_id, g in tl.generators.get(tid, {}).items():
            if (chunk := _to_store(logs, ("generator", agent_id), g, ("generator", agent_id) in whole)) is None:
                generator_rows.append((tid, agent_id, names.get(agent_id, ""), g.width, _generator_blob(g)))
            elif chunk[1]:
                generator_chunks.append((tid, agent_id, *chunk))
    tl.dirty.difference_update(due_more)
    if rows or label_rows or generator_rows or label_chunks or generator_chunks:
        try:
            # The test's own last: once it is stored up to a point, so are its labels' and generators'
            # (a replica catching up reads them after it: ``seriesshare.py``).
            if label_rows or generator_rows or label_chunks or generator_chunks:
                await s.store.save_result_series(label_rows, generator_rows, label_chunks, generator_chunks)
            if rows:
                await s.store.save_series(rows)
        except sqlite3.OperationalError:
            s.series.dirty.update(due)
            tl.dirty.update(due_more)
            _unsaved(tl, before)
            raise
        except Exception as exc:
            for tid in due_more:  # what the store holds is unknown: stored whole next time
                tl.logs.pop(tid, None)
            log.error("timelines of %d test(s) cannot be stored, left out until they change: %s", len(due), exc)
    for tid in s.series.ids() if everything else due:
        if tid not in s.series.dirty and _ended(s, tid):
            s.series.drop(tid)
    for tid in tl.ids() if everything else due_more:
        if tid not in tl.dirty and _ended(s, tid):
            tl.drop(tid)
    for tid in [tid for tid in tl.sampled if _ended(s, tid)]:
        del tl.sampled[tid]
    for tid in [tid for tid in tl.ids() if tid not in s.tests]:  # deleted
        tl.drop(tid)
    if everything:
        gone = [tid for tid in tl.known if tid not in s.tests]
        if gone:
            await s.store.delete_result_series(gone)
        tl.known = set(s.tests)


async def points(s: ServerState, t: TestRec) -> list[TestSeriesPoint]:
    """``t``'s whole timeline: from memory while it runs (or until stored), else from the store."""
    if t.id in s.series or t.state not in TEST_TERMINAL:
        return s.series.get(t.id)
    row = await s.store.series_of(t.id)
    if row is None:
        return []
    _, width, coarse, packed = row
    return points_out(Timeline.unpack(width, coarse, packed).points())


async def label_lines(s: ServerState, t: TestRec, label: str | None = None) -> list[tuple[str, LabelTimeline]]:
    """Each label's timeline of ``t`` (only ``label``'s when given; none when it has no such label),
    by label: from memory while it runs (or until stored), else from the store."""
    lines = s.timelines.labels.get(t.id)
    if lines is not None or t.state not in TEST_TERMINAL:
        lines = lines or {}
        names = sorted(lines) if label is None else [label] if label in lines else []
        return [(n, lines[n]) for n in names]
    return [
        (name, _label_line(width, coarse, packed, chunks))
        for _, name, width, coarse, packed, chunks in await s.store.label_series_of(t.id, label)
    ]


async def labels(s: ServerState, t: TestRec, label: str | None = None) -> list[LabelSeries]:
    """Each label's series of ``t`` as the wire lists them (see :func:`label_lines`)."""
    return [label_out(name, line) for name, line in await label_lines(s, t, label)]


async def generator_lines(s: ServerState, t: TestRec) -> list[tuple[str, str, GeneratorTimeline]]:
    """(agent id, agent name, its CPU and memory timeline) of each load generator of ``t``, by name."""
    lines = s.timelines.generators.get(t.id)
    if lines is not None or t.state not in TEST_TERMINAL:
        names = s.timelines.names.get(t.id, {})
        out = [(aid, names.get(aid, ""), g) for aid, g in (lines or {}).items()]
        return sorted(out, key=lambda x: (x[1], x[0]))
    return [
        (agent_id, name, _generator_line(width, blob, chunks))
        for _, agent_id, name, width, blob, chunks in await s.store.generator_series_of(t.id)
    ]


async def generators(s: ServerState, t: TestRec) -> list[GeneratorSeries]:
    """Each load generator's CPU and memory during ``t``, by agent name."""
    return [generator_out(aid, name, g) for aid, name, g in await generator_lines(s, t)]
