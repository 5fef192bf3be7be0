"""The replicas' own tables and the connection (and thread) that reads them: the change log
(``replica_changes``), the records it names as the tables hold them now, and the live data each
replica publishes (``replica_live``, UNLOGGED)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from octotui.server import tables
from octotui.server.records import AgentRec, CommandRec, ContainerRec, ProviderRec, TestRec
from octotui.server.store_monitors import AlarmRow, MonitorRow, read_alarms, read_monitor, read_test_monitors
from octotui.server.storebase import Connection

#: Seconds between two reads of ``replica_changes`` without a notification; between two tries at the
#: lease (and checks that it is still held); between two publications of live data.
POLL = 1.0
LEASE_EVERY = 1.0
LIVE_EVERY = 1.0
#: Changes are re-read this many seconds back as well (identities committed out of order).
WINDOW = 2.0
#: ``replica_changes`` rows older than this are deleted by the lease holder.
CHANGES_KEPT = 600.0
#: Slots of live data per replica: a reader that misses up to SLOTS - 1 publications loses nothing.
SLOTS = 8
CHANNEL = "octotui_changes"

_TABLES = (
    "CREATE TABLE IF NOT EXISTS replica_changes (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " origin TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL,"
    " at DOUBLE PRECISION NOT NULL DEFAULT extract(epoch FROM clock_timestamp()))",
    "CREATE INDEX IF NOT EXISTS replica_changes_at ON replica_changes (at)",
    # Live data is rebuilt by the next heartbeats: no WAL for it (UNLOGGED), lost in a crash.
    "CREATE UNLOGGED TABLE IF NOT EXISTS replica_live (replica TEXT NOT NULL, slot INTEGER NOT NULL,"
    " seq BIGINT NOT NULL, at DOUBLE PRECISION NOT NULL, data BYTEA NOT NULL, PRIMARY KEY (replica, slot))",
)

_SELECT_TEST_FILES = tables.select("test_files", tables.TEST_FILE_COLUMNS) + " WHERE test_id = ? ORDER BY position"
_SELECT_COMMANDS = (
    "SELECT " + ", ".join(f"c.{col}" for col in tables.COMMAND_COLUMNS) + ", t.plan FROM commands c"
    " LEFT JOIN tests t ON t.id = c.test_id WHERE c.agent_id = ? ORDER BY c.created_at"
)
TEST_FIELDS = (*tables.TEST_COLUMNS[1:], "files")
CONTAINER_FIELDS = tuple("index" if c == "idx" else c for c in tables.CONTAINER_COLUMNS[1:])
AGENT_FIELDS = ("provider_id", "name", "location", "version", "registered_at", "cpu_count", "memory_total",
                 "platform", "token_hash", "instance", "retiring", "drained", "machine_id")  # fmt: skip


def listen_enabled() -> bool:
    return os.environ.get("OCTOTUI_REPLICA_LISTEN", "1").strip().lower() not in ("0", "no", "off", "false")


@dataclass
class Delta:
    """Records another replica changed, as the tables hold them now (None: deleted)."""

    providers: dict[str, ProviderRec | None] = field(default_factory=dict)
    agents: dict[str, AgentRec | None] = field(default_factory=dict)
    tests: dict[str, tuple[TestRec | None, list[ContainerRec]]] = field(default_factory=dict)
    containers: dict[str, ContainerRec | None] = field(default_factory=dict)
    commands: dict[str, list[CommandRec]] = field(default_factory=dict)
    done: list[str] = field(default_factory=list)
    operators: list[tuple[str, str, str, float]] | None = None
    #: Monitors as stored (credentials still encrypted), None: deleted.
    monitors: dict[str, MonitorRow | None] = field(default_factory=dict)
    #: The monitors tests name (JSON ids, stop_on_critical), None: none (the test deleted).
    test_monitors: dict[str, tuple[str, bool] | None] = field(default_factory=dict)
    #: Alarms raised or ended (by the replica their monitor's samples reached).
    alarms: dict[int, AlarmRow | None] = field(default_factory=dict)


class Reader(Connection):
    """A connection of its own (and thread) for the replica's reads and live data, so that the
    store's writes never wait behind them, nor they behind the writes."""

    async def close(self) -> None:
        if self._pg is not None:
            await self._run(self._pg.close)
        self._executor.shutdown(wait=False)

    def ensure_tables(self) -> int:
        """Create the replicas' tables (once, however many replicas start); the newest change's id."""
        assert self._pg is not None
        self._pg.connect()
        self._pg.lock_migrations()
        try:
            for sql in _TABLES:
                self.db.execute(sql)
        finally:
            self._pg.unlock_migrations()
        row = self.db.execute("SELECT max(id) FROM replica_changes").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def changes(self, after: int) -> list[tuple[int, str, str, str]]:
        """Changes after ``after`` and those of the last :data:`WINDOW` seconds: (id, kind, key, origin)."""
        rows = self.db.execute(
            "SELECT id, kind, key, origin FROM replica_changes"
            " WHERE id > ? OR at > extract(epoch FROM clock_timestamp()) - ? ORDER BY id",
            (after, WINDOW),
        ).fetchall()
        return [(int(r[0]), r[1], r[2], r[3]) for r in rows]

    def read(self, keys: list[tuple[str, str]]) -> Delta:
        """The records ``keys`` name as the tables hold them now."""
        db, d = self.db, Delta()
        for kind, key in keys:
            if kind == "provider":
                row = db.execute(
                    "SELECT id, name, token_hash, created_at FROM providers WHERE id = ?", (key,)
                ).fetchone()
                d.providers[key] = ProviderRec(*row) if row else None
            elif kind == "agent":
                row = db.execute(tables.select("agents", tables.AGENT_COLUMNS) + " WHERE id = ?", (key,)).fetchone()
                d.agents[key] = tables.agent_from_row(row) if row else None
            elif kind == "test":
                d.tests[key] = self._test(key)
            elif kind == "container":
                row = db.execute(
                    tables.select("containers", tables.CONTAINER_COLUMNS) + " WHERE id = ?", (key,)
                ).fetchone()
                d.containers[key] = tables.container_from_row(row) if row else None
            elif kind == "commands":
                rows = db.execute(_SELECT_COMMANDS, (key,)).fetchall()  # with their tests' plans, in one statement
                plans = {r[4]: r[-1] for r in rows if r[-1] is not None}
                d.commands[key] = [tables.command_from_row(r[:-1], plans) for r in rows]
            elif kind == "done":
                d.done.append(key)
            elif kind == "operators":
                rows = db.execute(
                    "SELECT hash, role, subject, created_at FROM tokens WHERE role IN ('admin', 'read-only')"
                    " ORDER BY created_at"
                ).fetchall()
                d.operators = [(h, role, name or f"token-{h[:8]}", created) for h, role, name, created in rows]
            elif kind == "monitor":
                d.monitors[key] = read_monitor(db, key)
            elif kind == "test_monitors":
                d.test_monitors[key] = read_test_monitors(db, key)
                if key not in d.tests:  # its test with it: never named for a test not known yet
                    d.tests[key] = self._test(key)
            elif kind == "alarm" and key.isdigit():
                d.alarms[int(key)] = None  # read below, all in one statement (a raised alarm's value
                # changes with each sample: many may change at once)
        if d.alarms:
            d.alarms.update(read_alarms(db, list(d.alarms)))
        return d

    def _test(self, test_id: str) -> tuple[TestRec | None, list[ContainerRec]]:
        db = self.db
        row = db.execute(tables.select("tests", tables.TEST_COLUMNS) + " WHERE id = ?", (test_id,)).fetchone()
        if row is None:
            return None, []
        t = tables.test_from_row(row)
        files = db.execute(_SELECT_TEST_FILES, (test_id,))
        t.files = [tables.file_use_from_row(r) for r in files]
        rows = db.execute(tables.select("containers", tables.CONTAINER_COLUMNS) + " WHERE test_id = ?", (test_id,))
        return t, [tables.container_from_row(r) for r in rows]

    def pruned_past(self, after: int) -> bool:
        """True when changes after ``after`` may have been deleted before this replica read them."""
        row = self.db.execute("SELECT min(id) FROM replica_changes").fetchone()
        oldest = row[0] if row else None
        return oldest is not None and int(oldest) > after + 1

    def everything(self) -> tuple[int, list[tuple[str, str]]]:
        """The newest change's id and a key for every record the replicas keep in memory."""
        row = self.db.execute("SELECT max(id) FROM replica_changes").fetchone()
        newest = int(row[0]) if row and row[0] is not None else 0
        keys = [("provider", r[0]) for r in self.db.execute("SELECT id FROM providers")]
        agent_ids = [r[0] for r in self.db.execute("SELECT id FROM agents")]
        keys += [("agent", i) for i in agent_ids] + [("commands", i) for i in agent_ids]
        keys += [("test", r[0]) for r in self.db.execute("SELECT id FROM tests")]
        keys += [("monitor", r[0]) for r in self.db.execute("SELECT id FROM monitors")]
        keys += [("test_monitors", r[0]) for r in self.db.execute("SELECT test_id FROM test_monitors")]
        keys += [("alarm", str(r[0])) for r in self.db.execute("SELECT id FROM alarms WHERE ended_at IS NULL")]
        return newest, [*keys, ("operators", "")]

    def publish(self, origin: str, seq: int, data: bytes) -> None:
        """This replica's live data: one statement (an upsert of one row)."""
        self.db.execute(
            "INSERT INTO replica_live (replica, slot, seq, at, data)"
            " VALUES (?, ?, ?, extract(epoch FROM clock_timestamp()), ?) ON CONFLICT (replica, slot)"
            " DO UPDATE SET seq = excluded.seq, at = excluded.at, data = excluded.data",
            (origin, seq % SLOTS, seq, data),
        )

    def live(self, origin: str) -> list[tuple[str, int, bytes]]:
        rows = self.db.execute(
            "SELECT replica, seq, data FROM replica_live WHERE replica <> ?"
            " AND at > extract(epoch FROM clock_timestamp()) - ? ORDER BY seq",
            (origin, SLOTS * LIVE_EVERY * 4),
        ).fetchall()
        return [(r[0], int(r[1]), bytes(r[2])) for r in rows]

    def prune(self) -> None:
        self.db.execute(
            "DELETE FROM replica_changes WHERE at < extract(epoch FROM clock_timestamp()) - ?", (CHANGES_KEPT,)
        )
        self.db.execute("DELETE FROM replica_live WHERE at < extract(epoch FROM clock_timestamp()) - ?", (3600.0,))
