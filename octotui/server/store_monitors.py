"""The store's rows of monitors: their settings (credentials as the encrypted bytes only), alarms,
the series kept with tests, and which monitors each test names."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

from octotui.server.storebase import Connection

MONITOR_COLUMNS = ("id", "name", "agent_id", "kind", "spec", "credentials", "created_at", "updated_at")
ALARM_COLUMNS = (
    "id", "monitor_id", "metric", "severity", "started_at", "ended_at", "value", "test_id", "monitor_name", "threshold",
)  # fmt: skip
#: (id, name, agent id, kind, spec JSON, encrypted credentials or None, created_at, updated_at)
MonitorRow = tuple[str, str, str, str, str, bytes | None, float, float]
AlarmRow = tuple[int, str, str, str, float, float | None, float | None, str | None, str, str]
#: (test id, monitor id, metric, width, packed points)
MonitorSeriesRow = tuple[str, str, str, float, bytes]


def _cols(columns: tuple[str, ...]) -> str:
    return ", ".join(columns)


def _upsert(table: str, columns: tuple[str, ...], key: tuple[str, ...]) -> str:
    sets = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
    marks = ", ".join("?" for _ in columns)
    return f"INSERT INTO {table} ({_cols(columns)}) VALUES ({marks}) ON CONFLICT ({_cols(key)}) DO UPDATE SET {sets}"


_UPSERT_MONITOR = _upsert("monitors", MONITOR_COLUMNS, ("id",))
_UPSERT_ALARM = _upsert("alarms", ALARM_COLUMNS, ("id",))
_UPSERT_SERIES = _upsert("monitor_series", ("test_id", "monitor_id", "metric", "width", "points"),
                         ("test_id", "monitor_id", "metric"))  # fmt: skip
_UPSERT_TEST = _upsert("test_monitors", ("test_id", "monitors", "stop_on_critical"), ("test_id",))


@dataclass
class MonitorSnapshot:
    """What the server takes into memory at start: every monitor, the alarms still raised, the
    next alarm id, the monitors tests name, and the series of tests not ended."""

    monitors: list[MonitorRow] = field(default_factory=list)
    active_alarms: list[AlarmRow] = field(default_factory=list)
    next_alarm: int = 1
    test_monitors: list[tuple[str, str, int]] = field(default_factory=list)
    series: list[MonitorSeriesRow] = field(default_factory=list)


#: Alarm ids a server run on PostgreSQL may hand out (``_alarm_block``): 2**24, so 2**29 runs before
#: ids pass 2**53 (the largest integer a JSON client reads exactly).
ALARM_BLOCK = 1 << 24


class MonitorRows(Connection):
    """What monitors keep in the store (the :class:`~octotui.server.store.Store` is one)."""

    def _alarm_block(self) -> int:
        """On PostgreSQL, where several replicas raise alarms: the first id of a block of
        :data:`ALARM_BLOCK` ids of this run's own (a sequence hands blocks out), so that two replicas
        never give one id to two alarms (ids stay in memory until the alarms are written)."""
        assert self._pg is not None
        self._pg.lock_migrations()  # CREATE … IF NOT EXISTS is not safe against a concurrent one
        try:
            self.db.execute("CREATE SEQUENCE IF NOT EXISTS alarm_blocks")
        finally:
            self._pg.unlock_migrations()
        return int(self.db.execute("SELECT nextval('alarm_blocks')").fetchone()[0]) * ALARM_BLOCK + 1

    def _monitor_snapshot(self, live_tests: list[str]) -> MonitorSnapshot:
        db = self.db
        snap = MonitorSnapshot()
        snap.monitors = [_monitor_row(r) for r in db.execute(f"SELECT {_cols(MONITOR_COLUMNS)} FROM monitors")]
        rows = db.execute(f"SELECT {_cols(ALARM_COLUMNS)} FROM alarms WHERE ended_at IS NULL ORDER BY id")
        snap.active_alarms = [tuple(r) for r in rows]
        snap.next_alarm = int(db.execute("SELECT COALESCE(MAX(id), 0) FROM alarms").fetchone()[0]) + 1
        if self._pg is not None:
            snap.next_alarm = max(snap.next_alarm, self._alarm_block())
        rows = db.execute("SELECT test_id, monitors, stop_on_critical FROM test_monitors")
        snap.test_monitors = [(r[0], r[1], int(r[2])) for r in rows]
        for test_id in live_tests:
            snap.series += self._monitor_series_of(test_id)
        return snap

    def _monitor_series_of(self, test_id: str) -> list[MonitorSeriesRow]:
        rows = self.db.execute(
            "SELECT test_id, monitor_id, metric, width, points FROM monitor_series WHERE test_id = ?"
            " ORDER BY monitor_id, metric",
            (test_id,),
        )
        return [(r[0], r[1], r[2], r[3], bytes(r[4])) for r in rows]

    async def monitor_snapshot(self, live_tests: list[str]) -> MonitorSnapshot:
        return await self._run(self._monitor_snapshot, live_tests)

    async def save_monitor(self, row: MonitorRow) -> None:
        """Insert or update a monitor (its name is unique: ``sqlite3.IntegrityError`` otherwise)."""

        def run(db: sqlite3.Connection) -> None:
            db.execute(_UPSERT_MONITOR, row)
            self.note("monitor", row[0])

        await self._run(self._tx, run)

    async def delete_monitor(self, monitor_id: str, ended: list[AlarmRow]) -> None:
        """Forget a monitor; its alarms stay (those still raised written ended, ``ended``)."""

        def run(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM monitors WHERE id = ?", (monitor_id,))
            db.executemany(_UPSERT_ALARM, ended)
            self.note("monitor", monitor_id)

        await self._run(self._tx, run)

    async def save_alarms(self, rows: list[AlarmRow]) -> None:
        def run(db: sqlite3.Connection) -> None:
            db.executemany(_UPSERT_ALARM, rows)
            for r in rows:
                self.note("alarm", str(r[0]))

        await self._run(self._tx, run)

    async def alarms(self, monitor: str | None, test: str | None, active: bool | None, limit: int) -> list[AlarmRow]:
        """Alarms, newest first, filtered by monitor id, test id, still raised (or ended)."""

        def run() -> list[AlarmRow]:
            where: list[str] = []
            args: list[Any] = []
            if monitor is not None:
                where.append("monitor_id = ?")
                args.append(monitor)
            if test is not None:
                where.append("test_id = ?")
                args.append(test)
            if active is not None:
                where.append("ended_at IS NULL" if active else "ended_at IS NOT NULL")
            sql = f"SELECT {_cols(ALARM_COLUMNS)} FROM alarms"
            if where:
                sql += " WHERE " + " AND ".join(where)
            rows = self.db.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))
            return [tuple(r) for r in rows]

        return await self._run(run)

    async def save_monitor_series(self, rows: list[MonitorSeriesRow]) -> None:
        def run(db: sqlite3.Connection) -> None:
            db.executemany(_UPSERT_SERIES, rows)

        await self._run(self._tx, run)

    async def monitor_series_of(self, test_id: str) -> list[MonitorSeriesRow]:
        return await self._run(self._monitor_series_of, test_id)

    async def save_test_monitors(self, test_id: str, monitors_json: str, stop_on_critical: bool) -> None:
        def run(db: sqlite3.Connection) -> None:
            db.execute(_UPSERT_TEST, (test_id, monitors_json, int(stop_on_critical)))
            self.note("test_monitors", test_id)

        await self._run(self._tx, run)

    async def delete_test_monitors(self, test_id: str) -> None:
        """Forget what was kept of monitors for a deleted test (its alarms stay, naming it)."""

        def run(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM monitor_series WHERE test_id = ?", (test_id,))
            db.execute("DELETE FROM test_monitors WHERE test_id = ?", (test_id,))
            self.note("test_monitors", test_id)

        await self._run(self._tx, run)


def read_monitor(db: sqlite3.Connection, monitor_id: str) -> MonitorRow | None:
    """One monitor's row as stored now (for the other replicas: ``replica.py``); None: deleted."""
    row = db.execute(f"SELECT {_cols(MONITOR_COLUMNS)} FROM monitors WHERE id = ?", (monitor_id,)).fetchone()
    return None if row is None else _monitor_row(row)


def read_alarms(db: sqlite3.Connection, ids: list[int]) -> dict[int, AlarmRow]:
    """Alarms' rows as stored now, by id (for the other replicas), 500 ids a statement."""
    out: dict[int, AlarmRow] = {}
    for at in range(0, len(ids), 500):
        part = ids[at : at + 500]
        marks = ", ".join("?" for _ in part)
        for r in db.execute(f"SELECT {_cols(ALARM_COLUMNS)} FROM alarms WHERE id IN ({marks})", part):
            out[int(r[0])] = tuple(r)
    return out


def read_test_monitors(db: sqlite3.Connection, test_id: str) -> tuple[str, bool] | None:
    """The monitors a test names (JSON list of ids) and its stop_on_critical, as stored now; None: none."""
    row = db.execute("SELECT monitors, stop_on_critical FROM test_monitors WHERE test_id = ?", (test_id,)).fetchone()
    return None if row is None else (row[0], bool(row[1]))


def _monitor_row(r: Any) -> MonitorRow:
    return (r[0], r[1], r[2], r[3], r[4], None if r[5] is None else bytes(r[5]), r[6], r[7])
