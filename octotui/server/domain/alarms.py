"""Thresholds and alarms: a metric out of bounds for ``for`` seconds raises an alarm, back in bounds
clears it; a critical one stops the tests that asked for it. Alarms and the monitors' series kept
with tests are written in batches (never per sample).

An alarm's ``test_id`` is the newest test not ended that names its monitor (None when none does):
the alarm is kept with that test, as the monitor's samples are.

With replicas, a sample is judged by the replica it reached (it has them in order, from one agent);
the others get the samples into their windows only (``replica/live.py``) and the alarms through the
change log (:func:`take`), so an alarm is raised once and a critical one stops its test once.
"""

from __future__ import annotations

import logging
import sqlite3

from octotui.protocol import TERMINAL_TEST_STATES
from octotui.protocol.monitors import Alarm, MonitorSeries, TestMonitors, Threshold
from octotui.server.domain import clock, stopping
from octotui.server.domain.lifecycle import CRITICAL_STOP
from octotui.server.domain.state import ServerState
from octotui.server.domain.views import dt
from octotui.server.monitorbook import AlarmRec, MetricLine, MonitorRec
from octotui.server.store_monitors import AlarmRow

log = logging.getLogger("octotui.server")

#: Seconds between writes of the series of running tests' monitors.
SERIES_SAVE_EVERY = 15.0


def describe(th: Threshold) -> str:
    """``above 4 for 30 s``, ``below 1``, ``outside 1..4``."""
    if th.above is not None and th.below is not None:
        text = f"outside {th.below:g}..{th.above:g}"
    elif th.above is not None:
        text = f"above {th.above:g}"
    else:
        text = f"below {th.below:g}"
    return text + (f" for {th.for_s:g} s" if th.for_s else "")


def evaluate(s: ServerState, m: MonitorRec, ts: float, values: dict[str, float]) -> None:
    """Check one sample against the monitor's thresholds: raise or clear alarms."""
    raised = s.monitors.active.get(m.id)
    for th in m.rules:
        value = values.get(th.metric)
        if value is None:
            continue
        key = (th.metric, th.severity)
        alarm = raised.get(key) if raised else None
        if (th.above is not None and value > th.above) or (th.below is not None and value < th.below):
            since = m.crossed.setdefault(key, ts)
            if alarm is not None:
                if alarm.value != value:
                    alarm.value = value
                    s.monitors.unsaved_alarms[alarm.id] = alarm
            elif ts - since >= th.for_s:
                _raise(s, m, th, ts, value)
                raised = s.monitors.active[m.id]
        else:
            m.crossed.pop(key, None)
            if alarm is not None:
                _clear(s, m, alarm, ts)


def _raise(s: ServerState, m: MonitorRec, th: Threshold, ts: float, value: float) -> None:
    book = s.monitors
    tests = book.live_tests.get(m.id, [])
    alarm = AlarmRec(
        id=book.next_alarm,
        monitor_id=m.id,
        monitor_name=m.name,
        metric=th.metric,
        severity=th.severity,
        started_at=ts,
        value=value,
        threshold=describe(th),
        test_id=tests[-1] if tests else None,
    )
    book.next_alarm += 1
    book.active.setdefault(m.id, {})[(th.metric, th.severity)] = alarm
    book.unsaved_alarms[alarm.id] = alarm
    log.warning(
        "monitor %s (%s): %s alarm on %s = %g (%s)", m.name, m.id, th.severity, th.metric, value, alarm.threshold
    )
    if th.severity != "critical":
        return
    for test_id in tests:
        t = s.tests.get(test_id)
        if t is None or t.state in TERMINAL_TEST_STATES or not book.of_test[test_id][1]:
            continue
        stopping.stop_test(s, t, f"{CRITICAL_STOP}: {m.name} {th.metric} = {value:g} ({alarm.threshold})")


def _clear(s: ServerState, m: MonitorRec, alarm: AlarmRec, ts: float) -> None:
    alarm.ended_at = max(ts, alarm.started_at)
    del s.monitors.active[m.id][(alarm.metric, alarm.severity)]
    s.monitors.unsaved_alarms[alarm.id] = alarm
    log.info("monitor %s (%s): %s alarm on %s cleared", m.name, m.id, alarm.severity, alarm.metric)


def rules_changed(s: ServerState, m: MonitorRec) -> None:
    """After an update: alarms of thresholds no longer there end now; crossings start again."""
    keep = {(th.metric, th.severity) for th in m.rules}
    m.crossed = {k: v for k, v in m.crossed.items() if k in keep}
    for key, alarm in list(s.monitors.active.get(m.id, {}).items()):
        if key not in keep:
            _clear(s, m, alarm, clock.now())
        else:
            alarm.monitor_name = m.name


def take(s: ServerState, rows: dict[int, AlarmRow | None]) -> None:
    """Alarms another replica raised or ended (as the table holds them now) into memory: shown raised
    here too, never raised again here (each sample is judged by the one replica it reached)."""
    book = s.monitors
    for alarm_id, r in rows.items():
        if r is None or alarm_id in book.unsaved_alarms:
            continue  # a change of this replica's own, not written yet, wins
        a = from_row(r)
        raised = book.active.get(a.monitor_id, {})
        key = (a.metric, a.severity)
        if a.ended_at is None:
            if a.monitor_id in book.by_id:
                book.active.setdefault(a.monitor_id, {})[key] = a
        elif (held := raised.get(key)) is not None and held.id == a.id:
            del raised[key]


# --- rows and views ----------------------------------------------------------------------------


def row(a: AlarmRec) -> AlarmRow:
    return (a.id, a.monitor_id, a.metric, a.severity, a.started_at, a.ended_at, a.value, a.test_id,
            a.monitor_name, a.threshold)  # fmt: skip


def from_row(r: AlarmRow) -> AlarmRec:
    return AlarmRec(id=r[0], monitor_id=r[1], metric=r[2], severity=r[3], started_at=r[4], ended_at=r[5],
                    value=r[6], test_id=r[7], monitor_name=r[8], threshold=r[9])  # fmt: skip


def out(a: AlarmRec) -> Alarm:
    return Alarm(
        id=a.id,
        monitor=a.monitor_id,
        monitor_name=a.monitor_name,
        metric=a.metric,
        severity=a.severity,
        started_at=dt(a.started_at),
        ended_at=dt(a.ended_at),
        value=a.value,
        threshold=a.threshold,
        test_id=a.test_id,
    )


async def listed(s: ServerState, monitor: str | None, test: str | None, active: bool | None, limit: int) -> list[Alarm]:
    """Alarms, newest first (those not written yet are written first)."""
    await save(s)
    rows = await s.store.alarms(monitor, test, active, limit)
    return [out(from_row(r)) for r in rows]


#: While the store cannot be read, a running test's monitors answered from memory say so at most
#: this often (s).
MEMORY_SAID_EVERY = 60.0


async def of_test(s: ServerState, test_id: str) -> TestMonitors:
    """The monitors a test names: each metric's points during it, and its alarms.

    A running test's, while the store cannot be read (PostgreSQL away), come from memory: the series
    this server holds and the alarms it holds (raised and not cleared, or not written yet), without
    what only the store has (alarms cleared and written, other replicas' samples), said in the log
    once a minute at most. An ended test's need the store (its 503 says so)."""
    t = s.get_test(test_id)
    book = s.monitors
    ids, stop = book.of_test.get(t.id, ([], False))
    running = t.state not in TERMINAL_TEST_STATES
    try:
        await save(s)
        stored = {}
        if not running or s.replica is not None:  # with replicas: samples that reached another, as last stored
            stored = {(r[1], r[2]): MetricLine.unpack(r[3], r[4]) for r in await s.store.monitor_series_of(t.id)}
        alarms = [out(from_row(r)) for r in await s.store.alarms(None, t.id, None, 10_000)]
    except sqlite3.OperationalError as exc:  # the store cannot be read now (pgstore.StoreUnavailable…)
        if not running:
            raise
        _from_memory(s, t.id, exc)
        stored = {}
        held = {a.id: a for raised in book.active.values() for a in raised.values() if a.test_id == t.id}
        held.update({i: a for i, a in book.unsaved_alarms.items() if a.test_id == t.id})
        alarms = [out(held[i]) for i in sorted(held, reverse=True)]
    lines = stored
    if running:
        lines.update({(k[1], k[2]): line for k, line in book.series.items() if k[0] == t.id})
    names = {i: m.name for i in ids if (m := book.by_id.get(i)) is not None}
    series = [
        MonitorSeries(monitor=mid, monitor_name=names.get(mid, ""), metric=metric, points=line.points)
        for (mid, metric), line in sorted(lines.items())
    ]
    return TestMonitors(test_id=t.id, monitors=ids, stop_on_critical=stop, series=series, alarms=alarms)


_memory_said: dict[int, float] = {}  # id(state) -> when it was last said


def _from_memory(s: ServerState, test_id: str, exc: Exception) -> None:
    now = clock.now()
    if now - _memory_said.get(id(s), -MEMORY_SAID_EVERY) >= MEMORY_SAID_EVERY:
        _memory_said[id(s)] = now
        log.warning("monitors of running test %s answered from memory: their stored history (alarms "
                    "cleared and written, other replicas' samples) is not available now, the store "
                    "cannot be read: %s", test_id, exc)  # fmt: skip


# --- batched writes ------------------------------------------------------------------------------


async def save(s: ServerState, everything: bool = False) -> None:
    """Write the alarms raised or cleared since the last write; every ``SERIES_SAVE_EVERY`` (and
    at a test's end, and with ``everything``) the series of tests' monitors, dropping ended ones;
    forget what was kept of monitors for tests deleted since."""
    book = s.monitors
    if book.unsaved_alarms:
        batch, book.unsaved_alarms = book.unsaved_alarms, {}
        try:
            await s.store.save_alarms([row(a) for a in batch.values()])
        except (sqlite3.Error, ValueError):
            book.unsaved_alarms = {**batch, **book.unsaved_alarms}
            raise
    for test_id in [t for t in book.of_test if t not in s.tests]:
        # A deleted test: what was kept of its monitors goes too (its alarms stay, naming it).
        del book.of_test[test_id]  # first: a save running meanwhile (a GET's) does not delete it twice
        await s.store.delete_test_monitors(test_id)
    ended = {k for k in book.series if (t := s.tests.get(k[0])) is None or t.state in TERMINAL_TEST_STATES}
    now = clock.now()
    if not (ended or everything or now - book.series_saved_at >= SERIES_SAVE_EVERY):
        return
    book.series_saved_at = now
    keys = book.series_unsaved | ended if not everything else set(book.series)
    if keys:
        book.series_unsaved -= keys
        rows = [(k[0], k[1], k[2], *book.series[k].pack()) for k in keys if k in book.series]
        try:
            await s.store.save_monitor_series(rows)
        except (sqlite3.Error, ValueError):
            book.series_unsaved |= keys
            raise
    for k in ended:
        book.series.pop(k, None)
