"""The replica itself: started in the background, its loops (the others' changes, the lease, the
live exchange), the launch lock, and stopped with the server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import psycopg

from octotui.server.pgstore import CONNECT_TIMEOUT, RETRY_AFTER, StoreUnavailable, redact
from octotui.server.records import TestRec
from octotui.server.replica.apply import apply
from octotui.server.replica.lease import LaunchLock, Lease
from octotui.server.replica.live import Live
from octotui.server.replica.reader import CHANNEL, LIVE_EVERY, POLL, Delta, Reader, listen_enabled
from octotui.server.replica.strays import Strays

if TYPE_CHECKING:
    from octotui.server.domain.state import ServerState

log = logging.getLogger("octotui.server")


class Complaint:
    """A failure that repeats every second while PostgreSQL is away: logged when it starts, then at
    most once a minute, and once when it ends."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.since: float | None = None
        self.said = 0.0

    def failed(self, exc: object) -> None:
        now = time.monotonic()
        if self.since is None or now - self.said >= 60.0:
            log.warning("replica: %s (%s): retrying", self.what, exc)
            self.said = now
        if self.since is None:
            self.since = now

    def ok(self) -> None:
        if self.since is not None:
            log.info("replica: %s for %.0f s: back", self.what, time.monotonic() - self.since)
            self.since = None


class Replica:
    """This server as one replica among others on one PostgreSQL (see the module's docstring)."""

    def __init__(self, s: ServerState, url: str) -> None:
        self.s = s
        self.url = url
        self.id = f"{socket.gethostname()}:{s.settings.port}:{os.getpid()}:{secrets.token_hex(3)}"
        self.reader = Reader(s.settings.db_path, url)
        self.last_id = 0
        self._seen: OrderedDict[int, None] = OrderedDict()
        self._wake = asyncio.Event()
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.lease = Lease(url, self.id)
        self._launch = LaunchLock(url, self.id)
        self.live = Live(s, self.reader, self.id)
        self.strays = Strays(self)
        self._listener: threading.Thread | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._setup: asyncio.Task[None] | None = None
        #: True once its tables exist and its loops run (its writes are told to the others from then).
        self.ready = False
        self._sync_fails = Complaint("changes of the others not read")
        self._live_fails = Complaint("live data not exchanged")
        self._listen_fails = Complaint("LISTEN connection lost")
        self.listening = listen_enabled()
        #: Applied changes (for tests and logs).
        self.applied = 0

    @property
    def leader(self) -> bool:
        """True while this replica holds the lease (it does the background duties)."""
        return self.lease.held and self._live_fails.since is None

    @property
    def cut(self) -> bool:
        """True while the live exchange fails (PostgreSQL away) with other replicas running: the
        heartbeats they take are not seen here meanwhile."""
        return self._live_fails.since is not None and self.lease.others > 0

    @property
    def others(self) -> int:
        """Other replicas running on the database now."""
        return self.lease.others

    # --- start and stop ------------------------------------------------------------------------

    def start(self) -> None:
        """Start in the background: the database may be unreachable now (the server serves anyway,
        and becomes a replica once it can reach it)."""
        self._loop = asyncio.get_running_loop()
        self._setup = asyncio.create_task(self._start(), name="octotui-replica-start")

    async def _start(self) -> None:
        while True:
            try:
                newest = await self.reader._run(self.reader.ensure_tables)
                # From the store's start-up snapshot on, not from now: the others' changes made in
                # between (this replica's start may come seconds after its snapshot) are read too.
                seen = self.s.store.changes_seen
                self.last_id = newest if seen is None else min(seen, newest)
                break
            except (sqlite3.Error, psycopg.Error) as exc:
                log.warning("replica: PostgreSQL not usable yet (%s): trying again", exc)
                await asyncio.sleep(POLL)
        self.s.store.origin = self.id  # from now on the store's transactions tell the others
        if self.listening:
            self._listener = threading.Thread(target=self._listen, name="octotui-listen", daemon=True)
            self._listener.start()
        self._tasks = [
            asyncio.create_task(self._sync_loop(), name="octotui-replica-sync"),
            asyncio.create_task(self.lease.loop(), name="octotui-replica-lease"),
            asyncio.create_task(self._live_loop(), name="octotui-replica-live"),
        ]
        self.ready = True
        log.info("replica %s on %s (LISTEN %s)", self.id, redact(self.url), "on" if self.listening else "off: polling")

    async def stop(self) -> None:
        self._stop.set()
        if self._setup is not None:
            self._setup.cancel()
            with contextlib.suppress(BaseException):
                await self._setup
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        await self.lease.close()
        self._launch.close()
        with contextlib.suppress(Exception):
            await self.reader.close()

    # --- changes -------------------------------------------------------------------------------

    def _listen(self) -> None:
        """The LISTEN connection's thread: each notification (and each reconnection) wakes the reader."""
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                    application_name=f"octotui-listen {self.id}"[:63],
                    keepalives=1, keepalives_idle=10, keepalives_interval=3, keepalives_count=3,
                ) as conn:  # fmt: skip
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._listen_fails.ok()
                    self._poke()  # (re)connected: whatever was notified meanwhile is read now
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            if note.payload != self.id:
                                self._poke()
            except psycopg.Error as exc:
                if not self._stop.is_set():
                    self._listen_fails.failed(" ".join(str(exc).split())[:200])
                    self._stop.wait(0.5)

    def _poke(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._wake.set)

    async def _sync_loop(self) -> None:
        # Not asyncio.wait_for: on Python 3.11 a cancel arriving as the wake-up comes is swallowed
        # by it, and this loop went on for good, stop() awaiting it (a test's shutdown hung 300 s).
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.sync()
                self._sync_fails.ok()
            except (sqlite3.Error, psycopg.Error, ValueError) as exc:
                self._sync_fails.failed(exc)
                await asyncio.sleep(POLL)
            except Exception:
                log.exception("replica: changes of the others not taken; retrying")
                await asyncio.sleep(POLL)

    async def sync(self) -> None:
        """Read the others' changes since the last read and take them into memory."""
        got = await self.reader._run(self._read_new, self.last_id)  # one hop to the reader's thread
        if got == "pruned":
            await self.resync()
            return
        if got is None or isinstance(got, str):
            return
        fresh, delta = got
        for i, _, _ in fresh:
            self._seen[i] = None
            self.last_id = max(self.last_id, i)
        while len(self._seen) > 50_000:
            self._seen.popitem(last=False)
        apply(self.s, delta)
        self.applied += len(fresh)

    async def resync(self) -> None:
        """Changes this replica had not read were pruned (it was cut from the database longer than
        :data:`CHANGES_KEPT`): every record is read again, those of memory and those of the tables."""
        s = self.s
        known = [("provider", k) for k in s.providers] + [("agent", k) for k in s.agents]
        known += [("test", k) for k in s.tests] + [("commands", k) for k in s.agents]
        known += [("monitor", k) for k in s.monitors.by_id] + [("test_monitors", k) for k in s.monitors.of_test]
        known += [("alarm", str(a.id)) for raised in s.monitors.active.values() for a in raised.values()]
        newest, stored = await self.reader._run(self.reader.everything)
        log.warning("replica %s: changes of the others were pruned before it read them: reading everything", self.id)
        delta = await self.reader._run(self.reader.read, list(dict.fromkeys(known + stored)))
        apply(s, delta)
        self.last_id = max(self.last_id, newest)

    def _read_new(self, after: int) -> tuple[list[tuple[int, str, str]], Delta] | str | None:
        """On the reader's thread: the changes not taken yet (this replica's own are only counted as
        read) and the records the others' name; "pruned" when some were deleted before read."""
        if self.reader.pruned_past(after):
            return "pruned"
        seen = self._seen
        rows = [(i, kind, key, origin) for i, kind, key, origin in self.reader.changes(after) if i not in seen]
        if not rows:
            return None
        keys = list(dict.fromkeys((kind, key) for _, kind, key, origin in rows if origin != self.id))
        return [(i, kind, key) for i, kind, key, _ in rows], self.reader.read(keys)

    async def fetch_test(self, test_id: str) -> TestRec | None:
        """A test (with its containers) read now, taken into memory."""
        delta = await self.reader._run(self.reader.read, [("test", test_id)])
        apply(self.s, delta)
        return self.s.tests.get(test_id)

    # --- launches ------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def launching(self) -> AsyncIterator[None]:
        """Hold the replicas' launch lock, with every change of the others taken, while placing and
        writing a launch. Raises the store's :class:`StoreUnavailable` when PostgreSQL cannot be reached."""
        await self._launch.take()
        try:
            if self.ready:
                try:
                    await self.sync()  # what the others launched up to now is in memory
                except StoreUnavailable:
                    # The reader's connection may have failed a moment before PostgreSQL came back:
                    # it waits RETRY_AFTER before connecting again, so the launch asks once more then.
                    await asyncio.sleep(RETRY_AFTER)
                    await self.sync()
            yield
        finally:
            await self._launch.release()

    async def duties(self) -> None:
        """The lease holder's own clean-up: old changes and live rows."""
        await self.reader._run(self.reader.prune)

    # --- live data -----------------------------------------------------------------------------

    async def _live_loop(self) -> None:
        while not self._stop.is_set():
            await asyncio.sleep(LIVE_EVERY)
            try:
                await self.live.exchange()
                if self._live_fails.since is not None:
                    # Cut from the others, this replica could not see the heartbeats they took: agents
                    # get offline_after from now to be seen again, as after a restart.
                    now = time.time()
                    for a in self.s.agents.values():
                        a.health_ref = max(a.health_ref, now)
                self._live_fails.ok()
            except (sqlite3.Error, psycopg.Error) as exc:
                self._live_fails.failed(exc)
            except Exception:
                log.exception("replica: live data not exchanged; retrying")


async def start(s: ServerState) -> Replica | None:
    """The replica of a server on PostgreSQL, started; None on SQLite (one server alone)."""
    url = s.store.database
    if url is None:
        return None
    replica = Replica(s, url)
    replica.start()
    return replica
