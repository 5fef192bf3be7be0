"""Durable state in SQLite: one connection, used only from one worker thread.

Every public coroutine hands its work to a single-thread executor, so SQLite is never touched
from the event loop and writes keep the order they were submitted in. The interface speaks in
records (``records.py``), never in SQL rows, so that a PostgreSQL store can replace this one.
Live figures (heartbeats, host samples) are not written here: only changes of state are.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic_core import PydanticSerializationError

from octotui.protocol import AuditEntry, FinalResults, JMeterFigures, LaunchSpec, TestResults
from octotui.server.auth import hash_token
from octotui.server.datadir import DataDirError, check_database, damaged
from octotui.server.errors import Unstorable
from octotui.server.records import AgentRec, CommandRec, ContainerRec, ProviderRec, TestRec

T = TypeVar("T")

PROVIDERS = """
CREATE TABLE IF NOT EXISTS providers (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, token_hash TEXT NOT NULL, created_at REAL NOT NULL)"""
SCHEMA = (
    PROVIDERS
    + """;
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY, role TEXT NOT NULL, subject TEXT NOT NULL, created_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS tokens_subject ON tokens(subject);
CREATE TABLE IF NOT EXISTS agents (
    id TEXT PRIMARY KEY, provider_id TEXT NOT NULL, name TEXT NOT NULL, location TEXT NOT NULL,
    version TEXT NOT NULL, registered_at REAL NOT NULL, cpu_count INTEGER NOT NULL,
    memory_total INTEGER NOT NULL, platform TEXT NOT NULL, token_hash TEXT NOT NULL, last_seen REAL);
CREATE TABLE IF NOT EXISTS tests (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, provider_id TEXT NOT NULL, provider_name TEXT NOT NULL,
    locations TEXT NOT NULL, image TEXT NOT NULL, properties TEXT NOT NULL, plan TEXT NOT NULL,
    state TEXT NOT NULL, reason TEXT, created_at REAL NOT NULL, started_at REAL, ended_at REAL,
    stop_requested INTEGER NOT NULL, results TEXT, container_ids TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY, test_id TEXT NOT NULL, agent_id TEXT NOT NULL, idx INTEGER NOT NULL,
    state TEXT NOT NULL, shutdown_port INTEGER NOT NULL, docker_id TEXT, exit_code INTEGER, error TEXT,
    final TEXT, figures TEXT, updated_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS containers_test ON containers(test_id);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, actor TEXT NOT NULL, role TEXT NOT NULL,
    action TEXT NOT NULL, target TEXT NOT NULL, detail TEXT NOT NULL, address TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS commands (
    id TEXT PRIMARY KEY, agent_id TEXT NOT NULL, kind TEXT NOT NULL, container_id TEXT NOT NULL,
    test_id TEXT NOT NULL, created_at REAL NOT NULL, launch TEXT, grace_s REAL NOT NULL);
"""
)


def _split(script: str) -> list[str]:
    return [stmt.strip() for stmt in script.split(";") if stmt.strip()]


def _v1(db: sqlite3.Connection) -> None:
    """The schema as it was when versions started to be kept."""
    for stmt in _split(SCHEMA):
        db.execute(stmt)


def _v2(db: sqlite3.Connection) -> None:
    """Durable idempotency keys; agents' instance ids and retiring flag; launches without the plan."""
    db.execute(
        "CREATE TABLE idempotency (key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, test_id TEXT NOT NULL,"
        " created_at REAL NOT NULL)"
    )
    db.execute("ALTER TABLE agents ADD COLUMN instance TEXT")
    db.execute("ALTER TABLE agents ADD COLUMN retiring INTEGER NOT NULL DEFAULT 0")
    # The plan is the test's: each launch held a copy of it (a 4 MiB plan on 40 containers, 160 MiB).
    db.execute("UPDATE commands SET launch = json_remove(launch, '$.plan') WHERE launch IS NOT NULL")


#: The schema's history: migration N brings a database from version N-1 (``PRAGMA user_version``)
#: to N, in one transaction. Version 1 is the schema of the stores made before versions were kept
#: (they read 0: every statement of version 1 is ``IF NOT EXISTS``). Append, never edit.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _v1,
    _v2,
)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(db: sqlite3.Connection) -> int:
    """Bring ``db`` (autocommit connection) to :data:`SCHEMA_VERSION`; returns the version it had."""
    found = int(db.execute("PRAGMA user_version").fetchone()[0])
    for version in range(found + 1, SCHEMA_VERSION + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[version - 1](db)
            db.execute(f"PRAGMA user_version = {version}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    return found


def _create(path: Path) -> None:
    """A new database with the whole schema, put in place only once complete: a start cut short
    leaves no empty file behind that the next start would have to refuse."""
    tmp = path.with_name(path.name + ".new")
    tmp.unlink(missing_ok=True)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    db = sqlite3.connect(tmp, isolation_level=None)
    try:
        migrate(db)
    finally:
        db.close()
    os.replace(tmp, path)


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


def _dump(model: Any) -> str | None:
    return None if model is None else model.model_dump_json()


class Store:
    """SQLite store. Open with :meth:`open`, close with :meth:`close`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="octotui-store")
        self._db: sqlite3.Connection | None = None
        self._data_version: int | None = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "store is not open"
        return self._db

    # --- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> Snapshot:
        """Create the schema if needed and return everything stored."""
        return await self._run(self._open)

    def _open(self) -> Snapshot:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            _create(self.path)  # only an absent file is a fresh install
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
            self._hash_provider_tokens()
            return self._load()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise
            self._close()
            raise DataDirError(damaged(self.path, exc)) from None

    def _hash_provider_tokens(self) -> None:
        """Stores made before registration tokens were hashed kept them as-is: hash them, in one step.

        The table is rebuilt (SQLite cannot change a column in place); the tokens keep working,
        they are only no longer readable.
        """
        db = self.db
        columns = {row[1] for row in db.execute("PRAGMA table_info(providers)")}
        if "token" not in columns:
            return
        rows = db.execute("SELECT id, name, token, created_at FROM providers").fetchall()
        # The readable tokens must not stay behind in freed pages or in the write-ahead log.
        db.execute("PRAGMA secure_delete=ON")
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("ALTER TABLE providers RENAME TO providers_plain")
            db.execute(PROVIDERS)
            db.executemany(
                "INSERT INTO providers (id, name, token_hash, created_at) VALUES (?, ?, ?, ?)",
                [(pid, name, hash_token(token), created) for pid, name, token, created in rows],
            )
            db.execute("DROP TABLE providers_plain")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("PRAGMA secure_delete=OFF")

    async def close(self) -> None:
        await self._run(self._close)
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
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
        for row in db.execute(
            "SELECT id, provider_id, name, location, version, registered_at, cpu_count, memory_total,"
            " platform, token_hash, last_seen, instance, retiring FROM agents"
        ):
            agent = AgentRec(*row[:11])
            agent.instance, agent.retiring = row[11], bool(row[12])
            snap.agents.append(agent)
        for row in db.execute(
            "SELECT id, name, provider_id, provider_name, locations, image, properties, plan, state, reason,"
            " created_at, started_at, ended_at, stop_requested, results, container_ids FROM tests ORDER BY created_at"
        ):
            snap.tests.append(
                TestRec(
                    id=row[0],
                    name=row[1],
                    provider_id=row[2],
                    provider_name=row[3],
                    locations=json.loads(row[4]),
                    image=row[5],
                    properties=json.loads(row[6]),
                    plan=row[7],
                    state=row[8],
                    reason=row[9],
                    created_at=row[10],
                    started_at=row[11],
                    ended_at=row[12],
                    stop_requested=bool(row[13]),
                    results=TestResults.model_validate_json(row[14]) if row[14] else None,
                    container_ids=json.loads(row[15]),
                )
            )
        for row in db.execute(
            "SELECT id, test_id, agent_id, idx, state, shutdown_port, docker_id, exit_code, error, final, figures,"
            " updated_at FROM containers"
        ):
            snap.containers.append(
                ContainerRec(
                    id=row[0],
                    test_id=row[1],
                    agent_id=row[2],
                    index=row[3],
                    state=row[4],
                    shutdown_port=row[5],
                    docker_id=row[6],
                    exit_code=row[7],
                    error=row[8],
                    final=FinalResults.model_validate_json(row[9]) if row[9] else None,
                    figures=JMeterFigures.model_validate_json(row[10]) if row[10] else None,
                    updated_at=row[11],
                )
            )
        snap.launch_keys = [
            tuple(row)
            for row in db.execute("SELECT key, fingerprint, test_id, created_at FROM idempotency ORDER BY created_at")
        ]
        plans = {t.id: t.plan for t in snap.tests}
        for row in db.execute(
            "SELECT id, agent_id, kind, container_id, test_id, created_at, launch, grace_s FROM commands"
            " ORDER BY created_at"
        ):
            snap.commands.append(
                CommandRec(
                    id=row[0],
                    agent_id=row[1],
                    kind=row[2],
                    container_id=row[3],
                    test_id=row[4],
                    created_at=row[5],
                    # stored without the plan, which is its test's (stored once)
                    launch=LaunchSpec.model_validate({**json.loads(row[6]), "plan": plans.get(row[4], "")})
                    if row[6]
                    else None,
                    grace_s=row[7],
                )
            )
        return snap

    def _tx(self, fn: Callable[[sqlite3.Connection], None]) -> None:
        db = self.db
        db.execute("BEGIN")
        try:
            fn(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # --- providers and tokens ------------------------------------------------------------------

    async def save_provider(self, p: ProviderRec) -> None:
        def run(db: sqlite3.Connection) -> None:
            db.execute(
                # An upsert, never a delete and insert: a row is only ever changed in place.
                "INSERT INTO providers (id, name, token_hash, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(id) DO UPDATE SET name = excluded.name, token_hash = excluded.token_hash",
                (p.id, p.name, p.token_hash, p.created_at),
            )

        await self._run(self._tx, run)

    async def delete_provider(self, provider_id: str, agent_ids: Iterable[str]) -> None:
        """Delete a provider, its agents and their tokens in one transaction."""
        ids = list(agent_ids)

        def run(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM providers WHERE id = ?", (provider_id,))
            db.executemany("DELETE FROM agents WHERE id = ?", [(i,) for i in ids])
            db.executemany("DELETE FROM tokens WHERE subject = ? AND role = 'agent'", [(i,) for i in ids])
            db.executemany("DELETE FROM commands WHERE agent_id = ?", [(i,) for i in ids])

        await self._run(self._tx, run)

    async def save_token(self, token_hash: str, role: str, subject: str, created_at: float) -> None:
        """Store an operator or agent token (by its hash only)."""

        def run(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT OR REPLACE INTO tokens (hash, role, subject, created_at) VALUES (?, ?, ?, ?)",
                (token_hash, role, subject, created_at),
            )

        await self._run(self._tx, run)

    def _operators(self) -> list[tuple[str, str, str, float]]:
        rows = self.db.execute(
            "SELECT hash, role, subject, created_at FROM tokens WHERE role IN ('admin', 'read-only')"
            " ORDER BY created_at"
        ).fetchall()
        return [(h, role, name or f"token-{h[:8]}", created) for h, role, name, created in rows]

    def _version(self) -> int:
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
            return True

        return await self._run(self._immediate, run)

    async def remove_operator(self, name: str) -> bool:
        """Delete the operator token called ``name``; False when there is none."""

        def run(db: sqlite3.Connection) -> bool:
            cur = db.execute("DELETE FROM tokens WHERE subject = ? AND role IN ('admin', 'read-only')", (name,))
            return cur.rowcount > 0

        return await self._run(self._immediate, run)

    def _immediate(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        # IMMEDIATE takes the write lock at once: the server and the CLI (two processes on one file)
        # never both pass a name check.
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            result = fn(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    # --- audit ---------------------------------------------------------------------------------

    async def add_audit(
        self, ts: float, actor: str, role: str, action: str, target: str, detail: str, address: str
    ) -> int:
        """Append one audit entry; returns its id."""

        def run() -> int:
            cur = self.db.execute(
                "INSERT INTO audit (ts, actor, role, action, target, detail, address) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (ts, actor, role, action, target, detail, address),
            )
            return int(cur.lastrowid or 0)

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
            db.execute(
                "INSERT OR REPLACE INTO tokens (hash, role, subject, created_at) VALUES (?, 'agent', ?, ?)",
                (a.token_hash, a.id, a.registered_at),
            )

        await self._run(self._tx, run)

    async def delete_agent(self, agent_id: str) -> None:
        def run(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM agents WHERE id = ?", (agent_id,))
            db.execute("DELETE FROM tokens WHERE subject = ? AND role = 'agent'", (agent_id,))
            db.execute("DELETE FROM commands WHERE agent_id = ?", (agent_id,))

        await self._run(self._tx, run)

    async def save_last_seen(self, rows: list[tuple[float | None, str]]) -> None:
        """Bulk update of agents' last heartbeat times (written now and then, never per heartbeat)."""

        def run(db: sqlite3.Connection) -> None:
            db.executemany("UPDATE agents SET last_seen = ? WHERE id = ?", rows)

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
            test_rows = [_test_row(t)]
            container_rows = [_container_row(c) for c in containers]
            command_rows = [_command_row(c) for c in commands]
        except (ValueError, PydanticSerializationError) as exc:
            raise Unstorable(f"the test cannot be stored, nothing was made: {_why(exc)}") from None

        def run(db: sqlite3.Connection) -> None:
            db.executemany("INSERT INTO tests VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", test_rows)
            db.executemany("INSERT INTO containers VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", container_rows)
            db.executemany("INSERT INTO commands VALUES (?,?,?,?,?,?,?,?)", command_rows)
            if launch_key is not None:
                db.execute(
                    "INSERT OR REPLACE INTO idempotency (key, fingerprint, test_id, created_at) VALUES (?, ?, ?, ?)",
                    (*launch_key, t.id, t.created_at),
                )

        try:
            await self._run(self._tx, run)
        except (ValueError, sqlite3.InterfaceError) as exc:  # UnicodeEncodeError is a ValueError
            raise Unstorable(f"the test cannot be stored, nothing was made: {_why(exc)}") from None

    async def checkpoint(self) -> None:
        """Fold the write-ahead log into the database and empty it (it never shrinks otherwise)."""

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
        test_rows = [_test_row(t) for t in tests]
        container_rows = [_container_row(c) for c in containers]
        command_rows = [_command_row(c) for c in new_commands or ()]
        done_rows = [(i,) for i in done_commands or ()]

        def run(db: sqlite3.Connection) -> None:
            db.executemany("INSERT OR REPLACE INTO tests VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", test_rows)
            db.executemany("INSERT OR REPLACE INTO containers VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", container_rows)
            db.executemany("INSERT OR REPLACE INTO commands VALUES (?,?,?,?,?,?,?,?)", command_rows)
            db.executemany("DELETE FROM commands WHERE id = ?", done_rows)

        await self._run(self._tx, run)


def _why(exc: BaseException) -> str:
    if isinstance(exc, UnicodeError) or "surrogates not allowed" in str(exc):
        return "a text value is not valid Unicode (a lone surrogate such as \\udc80)"
    return str(exc)


def _test_row(t: TestRec) -> tuple[Any, ...]:
    return (
        t.id,
        t.name,
        t.provider_id,
        t.provider_name,
        json.dumps(t.locations),
        t.image,
        json.dumps(t.properties),
        t.plan,
        t.state,
        t.reason,
        t.created_at,
        t.started_at,
        t.ended_at,
        int(t.stop_requested),
        _dump(t.results),
        json.dumps(t.container_ids),
    )


def _container_row(c: ContainerRec) -> tuple[Any, ...]:
    return (
        c.id,
        c.test_id,
        c.agent_id,
        c.index,
        c.state,
        c.shutdown_port,
        c.docker_id,
        c.exit_code,
        c.error,
        _dump(c.final),
        _dump(c.figures),
        c.updated_at,
    )


def _command_row(c: CommandRec) -> tuple[Any, ...]:
    # Without the plan: it is the test's, stored once with it and put back at load.
    launch = None if c.launch is None else c.launch.model_dump_json(exclude={"plan"})
    return (c.id, c.agent_id, c.kind, c.container_id, c.test_id, c.created_at, launch, c.grace_s)
