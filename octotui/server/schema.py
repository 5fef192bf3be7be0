"""The store's SQLite schema and its history: numbered migrations (``PRAGMA user_version``), each
in one transaction, and the one conversion older than versions (provider tokens kept readable)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from octotui.server.auth import hash_token

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


def _v3(db: sqlite3.Connection) -> None:
    """Per-label figures and error counts of each container (packed figures, errors as JSON)."""
    db.execute(
        "CREATE TABLE container_labels (container_id TEXT NOT NULL, label TEXT NOT NULL, test_id TEXT NOT NULL,"
        " figures BLOB, errors TEXT, PRIMARY KEY (container_id, label))"
    )
    db.execute("CREATE INDEX container_labels_test ON container_labels(test_id)")


def _v4(db: sqlite3.Connection) -> None:
    """A test's whole timeline (downsampled, packed doubles), and each container's uploaded JTL
    (its file under ``results/``: size, checksum, header line, when stored, when retention removed it)."""
    db.execute(
        "CREATE TABLE test_series (test_id TEXT PRIMARY KEY, width REAL NOT NULL, coarse INTEGER NOT NULL,"
        " points BLOB NOT NULL)"
    )
    db.execute(
        "CREATE TABLE container_jtl (container_id TEXT PRIMARY KEY, test_id TEXT NOT NULL, size INTEGER NOT NULL,"
        " sha256 TEXT NOT NULL, header TEXT NOT NULL, stored_at REAL NOT NULL, pruned_at REAL)"
    )
    db.execute("CREATE INDEX container_jtl_test ON container_jtl(test_id)")


def _v5(db: sqlite3.Connection) -> None:
    """Uploaded files (their bytes under ``files/``) and the files each test brings: copied, or split
    with each container's share (byte ranges and checksums, JSON) computed at launch."""
    db.execute(
        "CREATE TABLE files (id TEXT PRIMARY KEY, name TEXT NOT NULL, size INTEGER NOT NULL,"
        " sha256 TEXT NOT NULL, created_at REAL NOT NULL, lines INTEGER)"
    )
    db.execute(
        "CREATE TABLE test_files (test_id TEXT NOT NULL, file_id TEXT NOT NULL, position INTEGER NOT NULL,"
        " split INTEGER NOT NULL, header INTEGER NOT NULL, shares TEXT NOT NULL, PRIMARY KEY (test_id, file_id))"
    )
    db.execute("CREATE INDEX test_files_file ON test_files(file_id)")


def _v6(db: sqlite3.Connection) -> None:
    """Fleet care and pass/fail: agents drained by an operator and the machine id they report (two
    identities on one machine); tests' criteria (JSON list of expressions), their evaluation (JSON),
    verdict and warnings (JSON list)."""
    db.execute("ALTER TABLE agents ADD COLUMN drained INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE agents ADD COLUMN machine_id TEXT")
    db.execute("ALTER TABLE tests ADD COLUMN criteria TEXT")
    db.execute("ALTER TABLE tests ADD COLUMN verdict TEXT")
    db.execute("ALTER TABLE tests ADD COLUMN warnings TEXT")


def _v7(db: sqlite3.Connection) -> None:
    """Results kept with the test: each label's timeline (packed like ``test_series``) and each
    generator's CPU and memory during the test."""
    db.execute(
        "CREATE TABLE label_series (test_id TEXT NOT NULL, label TEXT NOT NULL, width REAL NOT NULL,"
        " coarse INTEGER NOT NULL, points BLOB NOT NULL, PRIMARY KEY (test_id, label))"
    )
    db.execute(
        "CREATE TABLE generator_series (test_id TEXT NOT NULL, agent_id TEXT NOT NULL, agent_name TEXT NOT NULL,"
        " width REAL NOT NULL, points BLOB NOT NULL, PRIMARY KEY (test_id, agent_id))"
    )


def _v8(db: sqlite3.Connection) -> None:
    """Monitors of the servers under test: their settings (credentials encrypted with the key file
    beside the database, never in it), their alarms (with the threshold and monitor name they were
    raised under, kept after the monitor is gone), their samples kept with tests, and which monitors
    each test names (and whether a critical alarm stops it)."""
    db.execute(
        "CREATE TABLE monitors (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, agent_id TEXT NOT NULL,"
        " kind TEXT NOT NULL, spec TEXT NOT NULL, credentials BLOB, created_at REAL NOT NULL,"
        " updated_at REAL NOT NULL)"
    )
    db.execute(
        "CREATE TABLE alarms (id INTEGER PRIMARY KEY, monitor_id TEXT NOT NULL, metric TEXT NOT NULL,"
        " severity TEXT NOT NULL, started_at REAL NOT NULL, ended_at REAL, value REAL, test_id TEXT,"
        " monitor_name TEXT NOT NULL, threshold TEXT NOT NULL)"
    )
    db.execute("CREATE INDEX alarms_monitor ON alarms(monitor_id)")
    db.execute("CREATE INDEX alarms_test ON alarms(test_id)")
    db.execute(
        "CREATE TABLE monitor_series (test_id TEXT NOT NULL, monitor_id TEXT NOT NULL, metric TEXT NOT NULL,"
        " width REAL NOT NULL, points BLOB NOT NULL, PRIMARY KEY (test_id, monitor_id, metric))"
    )
    db.execute(
        "CREATE TABLE test_monitors (test_id TEXT PRIMARY KEY, monitors TEXT NOT NULL,"
        " stop_on_critical INTEGER NOT NULL)"
    )


def _v9(db: sqlite3.Connection) -> None:
    """Several replicas on one database: the bytes of uploaded files and JTLs in the database in
    chunks of at most 1 MiB (``kind`` 'file' or 'jtl', ``key`` the file's or container's id, ``seq``
    from 0; each replica keeps a disk copy as a cache), and the fingerprint of the secrets key (an
    HMAC of a constant, never the key) that every replica's key must match."""
    db.execute(
        "CREATE TABLE blobs (kind TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL,"
        " PRIMARY KEY (kind, key, seq))"
    )
    db.execute(
        "CREATE TABLE key_fingerprints (name TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, created_at REAL NOT NULL)"
    )


def _v10(db: sqlite3.Connection) -> None:
    """Label and generator timelines of running tests appended to, not rewritten: the points of each
    save since a timeline was last stored whole (``label_series``, ``generator_series``, as before),
    one chunk a save in ``seq`` order. Rows stored before read as they are (no chunks)."""
    db.execute(
        "CREATE TABLE label_series_chunks (test_id TEXT NOT NULL, label TEXT NOT NULL, seq INTEGER NOT NULL,"
        " points BLOB NOT NULL, PRIMARY KEY (test_id, label, seq))"
    )
    db.execute(
        "CREATE TABLE generator_series_chunks (test_id TEXT NOT NULL, agent_id TEXT NOT NULL, seq INTEGER NOT NULL,"
        " points BLOB NOT NULL, PRIMARY KEY (test_id, agent_id, seq))"
    )


#: The schema's history: migration N brings a database from version N-1 (``PRAGMA user_version``)
#: to N, in one transaction. Version 1 is the schema of the stores made before versions were kept
#: (they read 0: every statement of version 1 is ``IF NOT EXISTS``). Append, never edit.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _v1,
    _v2,
    _v3,
    _v4,
    _v5,
    _v6,
    _v7,
    _v8,
    _v9,
    _v10,
)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(db: sqlite3.Connection) -> int:
    """Bring ``db`` (autocommit connection) to :data:`SCHEMA_VERSION`; returns the version it had.

    On PostgreSQL (``db`` a :class:`~octotui.server.pgstore.PgDb`): the same migrations, the version
    in a ``schema_version`` table, all of it under an advisory lock (replicas starting at once migrate
    once), after the database was checked (not another program's, not newer than this server).
    """
    if getattr(db, "dialect", "sqlite") == "postgresql":
        return _migrate_postgres(db)
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


def _migrate_postgres(db: Any) -> int:
    from octotui.server.pgstore import check_schema

    db.lock_migrations()
    try:
        found = check_schema(db, SCHEMA_VERSION)
        for version in range(found + 1, SCHEMA_VERSION + 1):
            db.begin()
            try:
                MIGRATIONS[version - 1](db)
                db.set_version(version)
            except BaseException:
                db.rollback()
                raise
            db.commit()
    finally:
        with contextlib.suppress(sqlite3.OperationalError):  # a lost connection released it already
            db.unlock_migrations()
    return found


def create(path: Path) -> None:
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


def hash_provider_tokens(db: sqlite3.Connection) -> None:
    """Stores made before registration tokens were hashed kept them as-is: hash them, in one step.

    The table is rebuilt (SQLite cannot change a column in place); the tokens keep working,
    they are only no longer readable.
    """
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
