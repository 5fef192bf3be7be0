"""Several ``octotui server`` processes (replicas) on one PostgreSQL database, each with its own data
dir, and what tests of them read from the database (who holds the background-duty lease)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg

from octotui.server.replica import LEASE
from tests.support.processes import ServerProcess


@contextlib.contextmanager
def replicas(
    tmp_path: Path, dsn: str, count: int = 2, env: dict[str, dict[str, str]] | None = None
) -> Iterator[list[ServerProcess]]:
    """``count`` replicas on ``dsn`` (named a, b, c…), started one after the other, stopped at the end."""
    started: list[ServerProcess] = []
    try:
        for i in range(count):
            name = "abcdefgh"[i]
            server = ServerProcess(tmp_path / name, "--database", dsn)
            started.append(server)
            _start_with_env(server, (env or {}).get(name, {}))
        yield started
    finally:
        for server in started:
            server.stop()


def _start_with_env(server: ServerProcess, extra: dict[str, str]) -> None:
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        server.start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def lease_holders(dsn: str) -> list[int]:
    """The ports of the replicas holding the background-duty lease (an advisory lock) now."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s"
            # advisory locks are per database: other tests' replicas run on other databases of the cluster
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (LEASE >> 32, LEASE & 0xFFFFFFFF),
        ).fetchall()
    # application_name: "octotui-lease <host>:<port>:<pid>:<random>"
    return [int(name.split()[1].split(":")[1]) for (name,) in rows]


def listeners(dsn: str) -> list[int]:
    """Backend pids of the replicas' LISTEN connections."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'octotui-listen %%'"
            " AND datname = current_database()"
        ).fetchall()
    return [pid for (pid,) in rows]
