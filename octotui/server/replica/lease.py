"""The background-duty lease (a session advisory lock on a connection of its own) and the launch lock
every replica takes from a launch's placement to its write."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg

from octotui.server.pgstore import CONNECT_TIMEOUT, StoreUnavailable, redact
from octotui.server.replica.reader import LEASE_EVERY

log = logging.getLogger("octotui.server")

#: The advisory lock whose holder does the background duties.
LEASE = 0x6F63746F0003
#: The advisory lock a launch holds on every replica from its placement to its write: two launches
#: through two replicas never place on the same capacity, nor give one shutdown port twice.
LAUNCH_LOCK = 0x6F63746F0004


class Lease:
    """Tries the lease every :data:`LEASE_EVERY` seconds (and checks the session still holds it):
    a replica killed loses its connection, PostgreSQL releases the lock, another takes it."""

    def __init__(self, url: str, replica_id: str) -> None:
        self.url = url
        self.id = replica_id
        self.held = False
        #: Other replicas running on the database now (their lease connections), read with the lease.
        self.others = 0
        self._conn: psycopg.Connection[Any] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="octotui-lease")

    async def loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            held = await loop.run_in_executor(self._pool, self._step)
            if held != self.held:
                self.held = held
                if held:
                    log.info("replica %s holds the lease: it does the background duties", self.id)
                else:
                    log.warning("replica %s lost the lease: another does the background duties", self.id)
            await asyncio.sleep(LEASE_EVERY)

    def _step(self) -> bool:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(
                    self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                    application_name=f"octotui-lease {self.id}"[:63],
                    keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=2,
                )  # fmt: skip
                held = False
            else:
                held = self.held
            # How many other replicas run now (each keeps a lease connection): also shows the session
            # (and with it the lock) alive.
            count = self._conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'octotui-lease %%'"
                " AND pid <> pg_backend_pid() AND datname = current_database()"
            ).fetchone()
            self.others = int(count[0]) if count else 0
            if held:
                return True
            row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (LEASE,)).fetchone()
            return bool(row and row[0])
        except psycopg.Error:
            self._close()
            return False

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.get_running_loop().run_in_executor(self._pool, self._close)
        self._pool.shutdown(wait=False)


class LaunchLock:
    """:data:`LAUNCH_LOCK` on a connection (and thread) of its own."""

    def __init__(self, url: str, replica_id: str) -> None:
        self.url = url
        self.id = replica_id
        self._conn: psycopg.Connection[Any] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="octotui-launch")

    async def take(self) -> None:
        """Raises the store's :class:`StoreUnavailable` when PostgreSQL cannot be reached."""
        await asyncio.get_running_loop().run_in_executor(self._pool, self._lock, True)

    async def release(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.get_running_loop().run_in_executor(self._pool, self._lock, False)

    def _lock(self, take: bool) -> None:
        # A connection kept since the last launch may have been ended meanwhile (PostgreSQL restarted):
        # it held no lock then, so the lock is asked once more on a new one before the launch is refused.
        for again in (True, False):
            kept = self._conn is not None and not self._conn.closed
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(
                        self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                        application_name=f"octotui-launch {self.id}"[:63],
                    )  # fmt: skip
                fn = "pg_advisory_lock" if take else "pg_advisory_unlock"
                self._conn.execute(f"SELECT {fn}(%s)", (LAUNCH_LOCK,))
                return
            except psycopg.Error as exc:
                if self._conn is not None:
                    with contextlib.suppress(Exception):
                        self._conn.close()
                self._conn = None
                if take and again and kept and isinstance(exc, psycopg.OperationalError):
                    continue
                if take:
                    raise StoreUnavailable(f"PostgreSQL at {redact(self.url)} is unreachable ({exc})") from None
                return

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._pool.shutdown(wait=False)
