"""``postgresql``: a server's activity from ``pg_stat_database`` and ``pg_locks``, over one
connection kept per monitor (opened again after a failure). A role with only ``pg_monitor`` (or
none: these views show every database's counters to any role) is enough.

Target ``host[:port][/database]`` (port 5432, database ``postgres`` by default); credentials
``username``/``password``. Metrics: ``connections`` (backends of every database),
``max_connections``, ``xact_commit_per_s``, ``xact_rollback_per_s``, ``deadlocks_per_s``,
``cache_hit_ratio`` (percent of blocks found in shared buffers since the last collection),
``locks``, ``locks_waiting``.
"""

from __future__ import annotations

from typing import Any

from agent.monitors.base import CollectError, Collector, Rates
from octotui.protocol.monitors import MonitorAssignment

_STATS = """
SELECT (SELECT sum(numbackends) FROM pg_stat_database),
       current_setting('max_connections')::float8,
       xact_commit, xact_rollback, blks_hit, blks_read, deadlocks,
       (SELECT count(*) FROM pg_locks), (SELECT count(*) FROM pg_locks WHERE NOT granted)
FROM pg_stat_database WHERE datname = current_database()
"""


def parse_target(target: str) -> tuple[str, int, str]:
    """``host[:port][/database]`` as (host, port, database)."""
    where, _, database = target.strip().partition("/")
    host, sep, port = where.rpartition(":") if where.count(":") == 1 else (where, "", "")
    if not sep:
        host, port = where, "5432"
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CollectError("bad target: host:port/database expected")
    return host, int(port), database or "postgres"


def _words(exc: Exception) -> str:
    text = str(exc)
    low = text.lower()
    if "password authentication failed" in low or "no password supplied" in low or "authentication failed" in low:
        return "authentication failed"
    if "connection refused" in low:
        return "unreachable: connection refused"
    if "timeout expired" in low:
        return "timed out while connecting"
    if "does not exist" in low or "permission denied" in low:
        return text.strip().splitlines()[-1].removeprefix("FATAL:").strip()[:200]
    return text.strip().splitlines()[0][:200] if text.strip() else type(exc).__name__


class PostgresqlCollector(Collector):
    def __init__(self, assignment: MonitorAssignment) -> None:
        super().__init__(assignment)
        self.host, self.port, self.database = parse_target(self.assignment.target)
        self.conn: Any = None
        self.rates = Rates()
        self._blocks: tuple[float, float] | None = None

    async def _connect(self) -> Any:
        import psycopg

        creds = self.assignment.credentials
        try:
            conn = await psycopg.AsyncConnection.connect(
                host=self.host, port=self.port, dbname=self.database,
                user=creds.username if creds and creds.username else "postgres",
                password=creds.password if creds and creds.password else None,
                connect_timeout=max(1, int(self.assignment.timeout)), autocommit=True,
                application_name="octotui-agent monitor",
            )  # fmt: skip
        except psycopg.Error as exc:
            raise CollectError(_words(exc)) from None
        self.version = str(conn.info.parameter_status("server_version") or "")[:100] or None
        return conn

    async def collect(self) -> dict[str, float]:
        import psycopg

        if self.conn is None or self.conn.closed:
            self.conn = await self._connect()
        try:
            async with self.conn.cursor() as cur:
                await cur.execute(_STATS)
                row = await cur.fetchone()
        except psycopg.Error as exc:
            await self.reset()
            raise CollectError(_words(exc)) from None
        if row is None:
            raise CollectError(f"database {self.database} not found in pg_stat_database")
        backends, max_conn, commit, rollback, hit, read, deadlocks, locks, waiting = (float(v or 0) for v in row)
        values = {"connections": backends, "max_connections": max_conn, "locks": locks, "locks_waiting": waiting}
        for key, total in (("xact_commit_per_s", commit), ("xact_rollback_per_s", rollback),
                           ("deadlocks_per_s", deadlocks)):  # fmt: skip
            rate = self.rates.rate(key, total)
            if rate is not None:
                values[key] = rate
        d_hit, d_read = (hit - self._blocks[0], read - self._blocks[1]) if self._blocks else (hit, read)
        if d_hit < 0 or d_read < 0:  # statistics were reset
            d_hit, d_read = hit, read
        self._blocks = (hit, read)
        if d_hit + d_read > 0:
            values["cache_hit_ratio"] = 100.0 * d_hit / (d_hit + d_read)
        return values

    async def reset(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                await conn.close()
            except Exception:  # already broken: nothing to close cleanly
                return
