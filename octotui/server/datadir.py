"""The server's data directory: held by one server at a time, its database checked before use."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from pathlib import Path
from typing import IO

from octotui.server.pgstore import PgDb, PgStartError, check_schema
from octotui.server.schema import SCHEMA_VERSION

LOCK_NAME = "server.lock"


class DataDirError(Exception):
    """The data directory cannot be used as it is; ``str()`` is one line saying why and what to do."""


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Take the data directory for this process (until it exits): a second server on it is refused.

    ``flock`` on ``DATA_DIR/server.lock``, which holds the owner's pid (written once the lock is
    held). The kernel releases the lock when the process ends, however it ends.
    """
    path = data_dir / LOCK_NAME
    handle = open(path, "a+")  # noqa: SIM115 - held open for the whole process
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
        handle.close()
        raise DataDirError(
            f"{data_dir} is in use by another octotui server (pid {owner}, lock {path}): "
            "stop it first, or give this one another --data-dir"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    with contextlib.suppress(OSError):
        os.chmod(path, 0o600)
    return handle


SQLITE_HEADER = b"SQLite format 3\x00"
#: Tables every octotui database has had since its first version.
OUR_TABLES = frozenset({"providers"})


def damaged(path: Path, exc: BaseException | str) -> str:
    return (
        f"the database {path} is damaged ({exc}): restore it from a backup, or move it away to start"
        " afresh (everything it held would be lost)"
    )


def check_database(path: Path) -> None:
    """Refuse (:class:`DataDirError`, one line) a database file that exists but is not a usable
    octotui database: empty, not SQLite, another program's, written by a newer octotui, or damaged.

    Only reads: a refused file is left exactly as it was. An absent file is a fresh install.
    """
    if not path.exists():
        return
    move = "move it away to start afresh (everything it held would be lost), or restore it from a backup"
    with path.open("rb") as f:
        header = f.read(len(SQLITE_HEADER))
    if not header:
        raise DataDirError(f"the database {path} is empty (0 bytes), not an octotui database: {move}")
    if header != SQLITE_HEADER:
        raise DataDirError(f"{path} is not a SQLite database, so not an octotui database: {move}")
    try:
        # Without a write-ahead log to read, "immutable": SQLite then creates no -wal/-shm beside it.
        wal = path.with_name(path.name + "-wal").exists()
        db = sqlite3.connect(f"{path.resolve().as_uri()}?{'mode=ro' if wal else 'immutable=1'}", uri=True)
    except sqlite3.Error as exc:
        raise DataDirError(damaged(path, exc)) from None
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if version == 0 and not tables & OUR_TABLES:
            raise DataDirError(
                f"the database {path} holds no octotui tables (another program's database?): "
                "give the server another --data-dir, or move the file away"
            )
        if version > SCHEMA_VERSION:
            raise DataDirError(
                f"the database {path} was written by a newer octotui (schema version {version}, this one"
                f" knows up to {SCHEMA_VERSION}): upgrade octotui"
            )
        problems = [row[0] for row in db.execute("PRAGMA quick_check(5)")]
        if problems != ["ok"]:
            raise DataDirError(damaged(path, "; ".join(problems)))
    except sqlite3.DatabaseError as exc:
        raise DataDirError(damaged(path, exc)) from None
    finally:
        db.close()


def check_postgres(url: str) -> None:
    """Refuse (:class:`DataDirError`, one line without the password) a PostgreSQL database that cannot
    be used: unreachable, a login refused, another program's tables, written by a newer octotui.

    Only reads: a refused database is left exactly as it was; an empty one is a fresh install.
    """
    db = PgDb(url)
    try:
        db.connect()
        check_schema(db, SCHEMA_VERSION)
    except PgStartError as exc:
        raise DataDirError(str(exc)) from None
    except sqlite3.Error as exc:  # lost between the connection and the check
        raise DataDirError(f"PostgreSQL at {db.where}: {exc}") from None
    finally:
        db.close()
