"""Durable state in SQLite (a file in the data dir) or PostgreSQL (``--database``), through the same
code: one connection, used only from one worker thread (storebase.py; pgstore.py translates).

Every public coroutine hands its work to a single-thread executor, so the database is never touched
from the event loop and writes keep the order they were submitted in. The interface speaks in
records (``records.py``), never in SQL rows. Live figures (heartbeats, host samples) are not
written here: only changes of state are.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic_core import PydanticSerializationError

from octotui.protocol import TERMINAL_TEST_STATES, AuditEntry
from octotui.server import tables
from octotui.server.datadir import DataDirError, check_database, damaged
from octotui.server.errors import Unstorable
from octotui.server.pgstore import PgStartError
from octotui.server.records import AgentRec, CommandRec, ContainerRec, FileRec, ProviderRec, TestRec
from octotui.server.schema import SCHEMA_VERSION as SCHEMA_VERSION
from octotui.server.schema import create, hash_provider_tokens, migrate
from octotui.server.store_monitors import MonitorRows
from octotui.server.store_results import ResultRows

T = TypeVar("T")


@dataclass
class Snapshot:
    """Everything the store holds, read once at start-up."""

    providers: list[ProviderRec] = field(default_factory=list)
    tokens: list[tuple[str, str, str]] = field(default_factory=list)  # (hash, role, subject)
    #: Operator tokens: (hash, role, name, created_at); unnamed ones of older stores get a name.
    operators: list[tuple[str, str, str, float]] = field(default_factory=list)
    agents: list[AgentRec] = field(default_factory=list)
    tests: list[TestRec] = field(default_factory=list)
    containers: list[ContainerRec] = field(default_factory=list)
    commands: list[CommandRec] = field(default_factory=list)
    #: Idempotency keys of launches: (key, request fingerprint, test id, created_at), oldest first.
    launch_keys: list[tuple[str, str, str, float]] = field(default_factory=list)
    #: Per-label figures of the containers of tests not ended (those of ended ones are read on demand).
    labels: list[tables.LabelRow] = field(default_factory=list)
    #: The stored timelines of tests not ended (those of ended ones are read on demand).
    series: list[tables.SeriesRow] = field(default_factory=list)
    #: Uploaded files, oldest first.
    files: list[FileRec] = field(default_factory=list)


class LaunchKeyTaken(Exception):
    """The Idempotency-Key of a launch was stored meanwhile (by another replica): its (fingerprint, test id)."""

    def __init__(self, fingerprint: str, test_id: str) -> None:
        super().__init__(test_id)
        self.fingerprint, self.test_id = fingerprint, test_id


#: Changed records are written over their rows, never deleted and inserted again.
#: Agents' last heartbeat times written in one statement (2 parameters each: SQLite allows 32,766).
LAST_SEEN_BATCH = 1000
_UPSERT_TESTS = tables.upsert("tests", tables.TEST_COLUMNS)
_UPSERT_CONTAINERS = tables.upsert("containers", tables.CONTAINER_COLUMNS)
_UPSERT_COMMANDS = tables.upsert("commands", tables.COMMAND_COLUMNS)
_SELECT_TEST_FILES = tables.select("test_files", tables.TEST_FILE_COLUMNS)
_UPSERT_TOKEN = tables.upsert("tokens", ("hash", "role", "subject", "created_at"))
_UPSERT_LAUNCH_KEY = tables.upsert("idempotency", ("key", "fingerprint", "test_id", "created_at"))


class Store(ResultRows, MonitorRows):
    """The store. Open with :meth:`open`, close with :meth:`close`."""

    # --- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> Snapshot:
        """Create the schema if needed and return everything stored."""
        return await self._run(self._open)

    def _open(self) -> Snapshot:
        if self._pg is not None:
            return self._open_postgres()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            create(self.path)  # only an absent file is a fresh install
        check_database(self.path)
        # Test plans, names and token hashes: the owner's only (SQLite gives its -wal and -shm
        # files the database file's mode).
        for path in (self.path, *(self.path.with_name(self.path.name + s) for s in ("-wal", "-shm"))):
            if path.exists():  # older stores' files, made before this rule
                os.chmod(path, 0o600)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            # The write-ahead log is folded back every 1,000 pages, and cut back to 4 MiB when it is.
            self.db.execute("PRAGMA wal_autocheckpoint=1000")
            self.db.execute(f"PRAGMA journal_size_limit={4 * 1024 * 1024}")
            migrate(self.db)
            hash_provider_tokens(self.db)
            return self._load()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise
            self._close()
            raise DataDirError(damaged(self.path, exc)) from None

    def _open_postgres(self) -> Snapshot:
        assert self._pg is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)  # the data dir still holds files
        self._pg.connect()
        try:
            migrate(self.db)
            # Before the snapshot: a replica reads the others' changes from there on, so that none
            # committed between this snapshot and its start is missed (replica/core.py).
            exists = self.db.execute("SELECT to_regclass('replica_changes') IS NOT NULL").fetchone()
            row = self.db.execute("SELECT max(id) FROM replica_changes").fetchone() if exists and exists[0] else None
            self.changes_seen = int(row[0]) if row and row[0] is not None else 0
            return self._load()
        except sqlite3.OperationalError as exc:  # lost while opening: one line, as at connection
            self._close()
            raise PgStartError(str(exc)) from None
        except BaseException:
            self._close()
            raise

    async def close(self) -> None:
        await self._run(self._close)
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._pg is not None:
            self._pg.close()
        if self._db is not None:
            self._db.close()
            self._db = None

    def _load(self) -> Snapshot:
        db = self.db
        snap = Snapshot()
        snap.providers = [
            ProviderRec(*row) for row in db.execute("SELECT id, name, token_hash, created_at FROM providers")
        ]
        snap.tokens = [tuple(row) for row in db.execute("SELECT hash, role, subject FROM tokens WHERE role = 'agent'")]
        snap.operators = self._operators()
        self._data_version = self._version()
        snap.agents = [tables.agent_from_row(row) for row in db.execute(tables.select("agents", tables.AGENT_COLUMNS))]
        snap.tests = [
            tables.test_from_row(row)
            for row in db.execute(tables.select("tests", tables.TEST_COLUMNS) + " ORDER BY created_at")
        ]
        by_id = {t.id: t for t in snap.tests}
        for row in db.execute(_SELECT_TEST_FILES + " ORDER BY test_id, position"):
            if (owner := by_id.get(row[0])) is not None:
                owner.files.append(tables.file_use_from_row(row))
        files = db.execute(tables.select("files", tables.FILE_COLUMNS) + " ORDER BY created_at")
        snap.files = [tables.file_from_row(row) for row in files]
        containers = db.execute(tables.select("containers", tables.CONTAINER_COLUMNS))
        snap.containers = [tables.container_from_row(row) for row in containers]
        snap.launch_keys = [
            tuple(row)
            for row in db.execute("SELECT key, fingerprint, test_id, created_at FROM idempotency ORDER BY created_at")
        ]
        plans = {t.id: t.plan for t in snap.tests}
        commands = db.execute(tables.select("commands", tables.COMMAND_COLUMNS) + " ORDER BY created_at")
        snap.commands = [tables.command_from_row(row, plans) for row in commands]
        live = [t.id for t in snap.tests if t.state not in TERMINAL_TEST_STATES]
        snap.labels = [row for test_id in live for row in self._labels_of(test_id)]
        snap.series = [row for test_id in live if (row := self._series_of(test_id)) is not None]
        return snap

    # --- providers and tokens ------------------------------------------------------------------

    async def save_provider(self, p: ProviderRec) -> None:
        def run(db: sqlite3.Connection) -> None:
            db.execute(
                # An upsert, never a delete and insert: a row is only ever changed in place.
                "INSERT INTO providers (id, name, token_hash, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(id) DO UPDATE SET name = excluded.name, token_hash = excluded.token_hash",
                (p.id, p.name, p.token_hash, p.created_at),
            )
            self.note("provider", p.id)

        await self._run(self._tx, run)

    async def delete_provider(self, provider_id: str, agent_ids: Iterable[str]) -> None:
        """Delete a provider, its agents and their tokens in one transaction."""
        ids = list(agent_ids)

        def run(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM providers WHERE id = ?", (provider_id,))
            db.executemany("DELETE FROM agents WHERE id = ?", [(i,) for i in ids])
            db.executemany("DELETE FROM tokens WHERE subject = ? AND role = 'agent'", [(i,) for i in ids])
            db.executemany("DELETE FROM commands WHERE agent_id = ?", [(i,) for i in ids])
            self.note("provider", provider_id)
            for i in ids:
                self.note("agent", i)

        await self._run(self._tx, run)

    async def save_token(self, token_hash: str, role: str, subject: str, created_at: float) -> None:
        """Store an operator or agent token (by its hash only)."""

        def run(db: sqlite3.Connection) -> None:
            db.execute(_UPSERT_TOKEN, (token_hash, role, subject, created_at))
            self.note("operators" if role != "agent" else "agent", "" if role != "agent" else subject)

        await self._run(self._tx, run)

    def _operators(self) -> list[tuple[str, str, str, float]]:
        rows = self.db.execute(
            "SELECT hash, role, subject, created_at FROM tokens WHERE role IN ('admin', 'read-only')"
            " ORDER BY created_at"
        ).fetchall()
        return [(h, role, name or f"token-{h[:8]}", created) for h, role, name, created in rows]

    def _version(self) -> int:
        if self._pg is not None:
            # No data_version on PostgreSQL: the operator tokens themselves tell (a few rows).
            return hash(tuple(self._operators()))
        return int(self.db.execute("PRAGMA data_version").fetchone()[0])

    async def operators_if_changed(self) -> list[tuple[str, str, str, float]] | None:
        """The operator tokens when another connection (the ``octotui token`` CLI) changed the file."""

        def run() -> list[tuple[str, str, str, float]] | None:
            version = self._version()
            if version == self._data_version:
                return None
            self._data_version = version
            return self._operators()

        return await self._run(run)

    async def operators(self) -> list[tuple[str, str, str, float]]:
        """Every operator token: (hash, role, name, created_at), oldest first."""
        return await self._run(self._operators)

    async def add_operator(self, name: str, role: str, token_hash: str, created_at: float) -> bool:
        """Store a named operator token; False (nothing stored) when the name is taken."""

        def run(db: sqlite3.Connection) -> bool:
            taken = db.execute(
                "SELECT 1 FROM tokens WHERE subject = ? AND role IN ('admin', 'read-only')", (name,)
            ).fetchone()
            if taken:
                return False
            db.execute(
                "INSERT INTO tokens (hash, role, subject, created_at) VALUES (?, ?, ?, ?)",
                (token_hash, role, name, created_at),
            )
            self.note("operators", "")
            return True

        return await self._run(self._immediate, run)

    async def remove_operator(self, name: str) -> bool:
        """Delete the operator token called ``name``; False when there is none."""

        def run(db: sqlite3.Connection) -> bool:
            cur = db.execute("DELETE FROM tokens WHERE subject = ? AND role IN ('admin', 'read-only')", (name,))
            self.note("operators", "")
            return cur.rowcount > 0

        return await self._run(self._immediate, run)

    # --- audit ---------------------------------------------------------------------------------

    async def add_audit(
        self, ts: float, actor: str, role: str, action: str, target: str, detail: str, address: str
    ) -> int:
        """Append one audit entry; returns its id."""

        def run() -> int:
            row = self.db.execute(
                "INSERT INTO audit (ts, actor, role, action, target, detail, address) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " RETURNING id",
                (ts, actor, role, action, target, detail, address),
            ).fetchone()
            return int(row[0]) if row else 0

        return await self._run(run)

    async def audit(self, limit: int, before: int | None = None) -> list[AuditEntry]:
        """At most ``limit`` entries, newest first, with ids below ``before`` when given."""

        def run() -> list[AuditEntry]:
            sql = "SELECT id, ts, actor, role, action, target, detail, address FROM audit"
            args: tuple[Any, ...] = ()
            if before is not None:
                sql += " WHERE id < ?"
                args = (before,)
            rows = self.db.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
            return [
                AuditEntry(id=r[0], ts=r[1], actor=r[2], role=r[3], action=r[4], target=r[5], detail=r[6], address=r[7])
                for r in rows
            ]

        return await self._run(run)

    # --- agents --------------------------------------------------------------------------------

    async def save_agent(self, a: AgentRec) -> None:
        """Insert or update an agent; its token row is replaced by the current one."""

        def run(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO agents (id, provider_id, name, location, version, registered_at, cpu_count,"
                " memory_total, platform, token_hash, last_seen, instance, retiring)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(id) DO UPDATE SET provider_id = excluded.provider_id, name = excluded.name,"
                " location = excluded.location, version = excluded.version, cpu_count = excluded.cpu_count,"
                " memory_total = excluded.memory_total, platform = excluded.platform,"
                " token_hash = excluded.token_hash, last_seen = excluded.last_seen, instance = excluded.instance,"
                " retiring = excluded.retiring",
                (
                    a.id,
                    a.provider_id,
                    a.name,
                    a.location,
                    a.version,
                    a.registered_at,
                    a.cpu_count,
                    a.memory_total,
                    a.platform,
                    a.token_hash,
                    a.last_seen,
                    a.instance,
                    int(a.retiring),
                ),
            )
            db.execute("DELETE FROM tokens WHERE subject = ? AND role = 'agent'", (a.id,))
            db.execute(_UPSERT_TOKEN, (a.token_hash, "agent", a.id, a.registered_at))
            self.note("agent", a.id)

        await self._run(self._tx, run)

    async def delete_agent(self, agent_id: str) -> None:
        def run(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM agents WHERE id = ?", (agent_id,))
            db.execute("DELETE FROM tokens WHERE subject = ? AND role = 'agent'", (agent_id,))
            db.execute("DELETE FROM commands WHERE agent_id = ?", (agent_id,))
            self.note("agent", agent_id)

        await self._run(self._tx, run)

    async def save_last_seen(self, rows: list[tuple[float | None, str]]) -> None:
        """Bulk update of agents' last heartbeat times (written now and then, never per heartbeat)."""

        def run(db: sqlite3.Connection) -> None:
            # One statement per LAST_SEEN_BATCH agents, not one per agent: at 5,000 agents on
            # PostgreSQL that was 5,000 statements every 30 s, 99 % of its writes (bench/replica_scale).
            for i in range(0, len(rows), LAST_SEEN_BATCH):
                part = rows[i : i + LAST_SEEN_BATCH]
                values = ", ".join(["(CAST(? AS DOUBLE PRECISION), CAST(? AS TEXT))"] * len(part))
                db.execute(
                    f"UPDATE agents SET last_seen = v.column1 FROM (VALUES {values}) AS v WHERE agents.id = v.column2",
                    [x for row in part for x in row],
                )

        await self._run(self._tx, run)

    # --- tests, containers, commands -----------------------------------------------------------

    async def create_test(
        self,
        t: TestRec,
        containers: list[ContainerRec],
        commands: list[CommandRec],
        launch_key: tuple[str, str] | None = None,
    ) -> None:
        """Write a new test, its containers, their launch commands and the ``launch_key``
        (Idempotency-Key, request fingerprint) that made it, in one transaction.

        Raises :class:`Unstorable` (nothing written) when a value cannot be stored.
        """
        try:
            test_rows = [tables.test_row(t)]
            file_rows = tables.test_file_rows(t)
            container_rows = [tables.container_row(c) for c in containers]
            command_rows = [tables.command_row(c) for c in commands]
        except (ValueError, PydanticSerializationError) as exc:
            raise Unstorable(f"the test cannot be stored, nothing was made: {tables.why(exc)}") from None

        def run(db: sqlite3.Connection) -> None:
            if launch_key is not None and self.origin is not None:
                # Another replica (or server) may have taken the key since memory was checked: the
                # transaction holds the write lock, so of two launches with one key one makes the test.
                row = db.execute(
                    "SELECT fingerprint, test_id FROM idempotency WHERE key = ?", (launch_key[0],)
                ).fetchone()
                if row is not None:
                    raise LaunchKeyTaken(row[0], row[1])
            db.executemany(tables.insert("tests", tables.TEST_COLUMNS), test_rows)
            db.executemany(tables.insert("containers", tables.CONTAINER_COLUMNS), container_rows)
            db.executemany(tables.insert("commands", tables.COMMAND_COLUMNS), command_rows)
            db.executemany(tables.insert("test_files", tables.TEST_FILE_COLUMNS), file_rows)
            if launch_key is not None:
                db.execute(_UPSERT_LAUNCH_KEY, (*launch_key, t.id, t.created_at))
            self.note("test", t.id)
            for agent_id in dict.fromkeys(c.agent_id for c in commands):
                self.note("commands", agent_id)

        try:
            replicated = launch_key is not None and self.origin is not None
            await self._run(self._immediate if replicated else self._tx, run)
        except (ValueError, sqlite3.InterfaceError) as exc:  # UnicodeEncodeError is a ValueError
            # (on PostgreSQL, a refused value is a pgstore.StoreValueError: a ValueError too)
            raise Unstorable(f"the test cannot be stored, nothing was made: {tables.why(exc)}") from None

    async def checkpoint(self) -> None:
        """Fold the write-ahead log into the database and empty it (it never shrinks otherwise).
        PostgreSQL checkpoints by itself: nothing to do there."""
        if self._pg is not None:
            return

        def run() -> None:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

        await self._run(run)

    async def forget_launch_keys(self, before: float) -> None:
        """Delete the idempotency keys made before ``before``."""

        def run(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM idempotency WHERE created_at < ?", (before,))

        await self._run(self._tx, run)

    async def save_changes(
        self,
        tests: list[TestRec],
        containers: list[ContainerRec],
        new_commands: list[CommandRec] | None = None,
        done_commands: list[str] | None = None,
    ) -> None:
        """Write changed tests and containers and queued/acknowledged commands in one transaction."""
        test_rows = [tables.test_row(t) for t in tests]
        container_rows = [tables.container_row(c) for c in containers]
        command_rows = [tables.command_row(c) for c in new_commands or ()]
        done_rows = [(i,) for i in done_commands or ()]
        keys = [("test", t.id) for t in tests] + [("container", c.id) for c in containers]
        agents = list(dict.fromkeys(c.agent_id for c in new_commands or ()))

        def run(db: sqlite3.Connection) -> None:
            db.executemany(_UPSERT_TESTS, test_rows)
            db.executemany(_UPSERT_CONTAINERS, container_rows)
            db.executemany(_UPSERT_COMMANDS, command_rows)
            db.executemany("DELETE FROM commands WHERE id = ?", done_rows)
            for kind, key in keys:
                self.note(kind, key)
            for agent_id in agents:
                self.note("commands", agent_id)
            for (command_id,) in done_rows:
                self.note("done", command_id)

        self.writing_begin(keys)
        try:
            await self._run(self._tx, run)
        finally:
            self.writing_end(keys)

    # --- deletion ------------------------------------------------------------------------------

    async def delete_test(self, test_id: str) -> None:
        """Delete an ended test and everything kept for it, in one transaction: its containers, their
        labels, queued commands, JTL records and their bytes, its timeline, its links to the files it brought and
        the idempotency keys that made it."""

        def run(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM tests WHERE id = ?", (test_id,))
            # Its JTLs' bytes (with --database; none on SQLite: blobs.py) before their records.
            db.execute(
                "DELETE FROM blobs WHERE kind = 'jtl' AND key IN"
                " (SELECT test_id || '/' || container_id FROM container_jtl WHERE test_id = ?)",
                (test_id,),
            )
            for table in ("containers", "commands", "container_labels", "test_series", "container_jtl", "idempotency",
                          "test_files"):  # fmt: skip
                db.execute(f"DELETE FROM {table} WHERE test_id = ?", (test_id,))
            self.note("test", test_id)

        await self._run(self._tx, run)
