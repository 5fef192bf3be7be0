"""Several server replicas on one PostgreSQL (``--database``): each serves every route from its memory,
kept in step with what the others write.

- **Changes.** Each store transaction of a replica writes the records it changed (kind, key) to
  ``replica_changes`` and NOTIFYs ``octotui_changes`` (storebase.py ``note``), in that transaction.
  The others re-read those records from their tables and take them into memory (:func:`apply`): a
  command queued through one replica wakes the long poll of its agent on another. The table is the
  truth, NOTIFY only the wake-up: a dedicated connection LISTENs (reconnected, and everything since
  the last change read re-read after a reconnect), and the table is read every :data:`POLL` seconds
  anyway, so a lost notification delays a change by at most that. ``OCTOTUI_REPLICA_LISTEN=0`` turns
  LISTEN off (behind a pooler in transaction mode, which cannot LISTEN): changes then come by the poll.
  A record this replica changed and has not written yet keeps its own change (written later, it wins
  in the table, and the others then take it).
- **Live data** (agents' last heartbeat, latest host sample, containers' live figures) never goes to
  the database per heartbeat: each replica publishes what changed through it in ONE statement per
  :data:`LIVE_EVERY` seconds (an UNLOGGED table, one row per replica and slot) and reads the others'.
- **Background duties** (the test state machine, lost containers, series sampling, retirements,
  JTL retention, forgetting idempotency keys, pruning ``replica_changes``) run on the replica that
  holds a session advisory lock on a connection of its own (:data:`LEASE`): a replica killed loses its
  connection, PostgreSQL releases the lock, and another takes it within :data:`LEASE_EVERY` seconds.

The change feed (``GET /changes``) stays per replica (its own epoch): changes taken from the others
are touched in it like local ones, so a dashboard that switches replica pays one full resync.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import sqlite3
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg

from octotui.protocol import DockerInfo, HostSample, JMeterFigures
from octotui.server import tables
from octotui.server.pgstore import CONNECT_TIMEOUT, StoreUnavailable, redact
from octotui.server.records import AgentRec, CommandRec, ContainerRec, ProviderRec, TestRec
from octotui.server.store_monitors import MonitorRow, read_monitor
from octotui.server.storebase import Connection

if TYPE_CHECKING:
    from octotui.server.domain.state import ServerState

log = logging.getLogger("octotui.server")

#: The advisory lock whose holder does the background duties.
LEASE = 0x6F63746F0003
#: The advisory lock a launch holds on every replica from its placement to its write: two launches
#: through two replicas never place on the same capacity, nor give one shutdown port twice.
LAUNCH_LOCK = 0x6F63746F0004
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
_TEST_FIELDS = (*tables.TEST_COLUMNS[1:], "files")
_CONTAINER_FIELDS = tuple("index" if c == "idx" else c for c in tables.CONTAINER_COLUMNS[1:])
_AGENT_FIELDS = ("provider_id", "name", "location", "version", "registered_at", "cpu_count", "memory_total",
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
        self.leader = False
        self.last_id = 0
        self._seen: OrderedDict[int, None] = OrderedDict()
        self._wake = asyncio.Event()
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lease_conn: psycopg.Connection[Any] | None = None
        self._lease_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="octotui-lease")
        self._launch_conn: psycopg.Connection[Any] | None = None
        self._launch_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="octotui-launch")
        self._listener: threading.Thread | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._setup: asyncio.Task[None] | None = None
        #: True once its tables exist and its loops run (its writes are told to the others from then).
        self.ready = False
        self._sync_fails = Complaint("changes of the others not read")
        self._live_fails = Complaint("live data not exchanged")
        self._listen_fails = Complaint("LISTEN connection lost")
        self._seq = 0
        self._live_seen: dict[str, int] = {}
        self._published: dict[str, float] = {}
        self._live_containers: dict[str, set[str]] = {}
        #: last_seen of agents as taken from another replica: those are not published again here.
        self._remote_seen: dict[str, float] = {}
        self.listening = listen_enabled()
        #: Other replicas running on the database now (their lease connections), read with the lease.
        self.others = 0
        #: Applied changes, and how many notifications woke the reader (for tests and logs).
        self.applied = 0

    # --- start and stop ------------------------------------------------------------------------

    def start(self) -> None:
        """Start in the background: the database may be unreachable now (the server serves anyway,
        and becomes a replica once it can reach it)."""
        self._loop = asyncio.get_running_loop()
        self._setup = asyncio.create_task(self._start(), name="octotui-replica-start")

    async def _start(self) -> None:
        while True:
            try:
                self.last_id = await self.reader._run(self.reader.ensure_tables)
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
            asyncio.create_task(self._lease_loop(), name="octotui-replica-lease"),
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
        with contextlib.suppress(Exception):
            await asyncio.get_running_loop().run_in_executor(self._lease_pool, self._lease_close)
        self._lease_pool.shutdown(wait=False)
        if self._launch_conn is not None:
            with contextlib.suppress(Exception):
                self._launch_conn.close()
        self._launch_pool.shutdown(wait=False)
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
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=POLL)
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
        known += [("monitor", k) for k in s.monitors.by_id]
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
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._launch_pool, self._launch_lock, True)
        try:
            if self.ready:
                await self.sync()  # what the others launched up to now is in memory
            yield
        finally:
            with contextlib.suppress(Exception):
                await loop.run_in_executor(self._launch_pool, self._launch_lock, False)

    def _launch_lock(self, take: bool) -> None:
        try:
            if self._launch_conn is None or self._launch_conn.closed:
                self._launch_conn = psycopg.connect(
                    self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                    application_name=f"octotui-launch {self.id}"[:63],
                )  # fmt: skip
            fn = "pg_advisory_lock" if take else "pg_advisory_unlock"
            self._launch_conn.execute(f"SELECT {fn}(%s)", (LAUNCH_LOCK,))
        except psycopg.Error as exc:
            if self._launch_conn is not None:
                with contextlib.suppress(Exception):
                    self._launch_conn.close()
            self._launch_conn = None
            if take:
                raise StoreUnavailable(f"PostgreSQL at {redact(self.url)} is unreachable ({exc})") from None

    # --- lease ---------------------------------------------------------------------------------

    async def _lease_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            held = await loop.run_in_executor(self._lease_pool, self._lease_step)
            if held != self.leader:
                self.leader = held
                if held:
                    log.info("replica %s holds the lease: it does the background duties", self.id)
                else:
                    log.warning("replica %s lost the lease: another does the background duties", self.id)
            await asyncio.sleep(LEASE_EVERY)

    def _lease_step(self) -> bool:
        try:
            if self._lease_conn is None or self._lease_conn.closed:
                self._lease_conn = psycopg.connect(
                    self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                    application_name=f"octotui-lease {self.id}"[:63],
                    keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=2,
                )  # fmt: skip
                held = False
            else:
                held = self.leader
            # How many other replicas run now (each keeps a lease connection): also shows the session
            # (and with it the lock) alive.
            count = self._lease_conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'octotui-lease %%'"
                " AND pid <> pg_backend_pid() AND datname = current_database()"
            ).fetchone()
            self.others = int(count[0]) if count else 0
            if held:
                return True
            row = self._lease_conn.execute("SELECT pg_try_advisory_lock(%s)", (LEASE,)).fetchone()
            return bool(row and row[0])
        except psycopg.Error:
            self._lease_close()
            return False

    def _lease_close(self) -> None:
        if self._lease_conn is not None:
            with contextlib.suppress(Exception):
                self._lease_conn.close()
            self._lease_conn = None

    async def duties(self) -> None:
        """The lease holder's own clean-up: old changes and live rows."""
        await self.reader._run(self.reader.prune)

    # --- live data -----------------------------------------------------------------------------

    async def _live_loop(self) -> None:
        while True:
            await asyncio.sleep(LIVE_EVERY)
            try:
                data = self._gather()
                if data is not None:
                    self._seq += 1
                    await self.reader._run(self.reader.publish, self.id, self._seq, data)
                rows = await self.reader._run(self.reader.live, self.id)
                for replica, seq, blob in rows:
                    if seq > self._live_seen.get(replica, 0):
                        self._live_seen[replica] = seq
                        take_live(self, json.loads(zlib.decompress(blob)))
                self._live_fails.ok()
            except (sqlite3.Error, psycopg.Error) as exc:
                self._live_fails.failed(exc)
            except Exception:
                log.exception("replica: live data not exchanged; retrying")

    def _gather(self) -> bytes | None:
        """The live data of agents that heartbeat through this replica since the last publication."""
        s = self.s
        agents_out: dict[str, Any] = {}
        containers_out: dict[str, Any] = {}
        for a in s.agents.values():
            seen = a.last_seen
            if seen is None or seen <= self._published.get(a.id, 0.0) or seen == self._remote_seen.get(a.id):
                continue
            self._published[a.id] = seen
            agents_out[a.id] = [
                seen,
                a.host.model_dump(mode="json") if a.host else None,
                a.docker.model_dump(mode="json") if a.docker else None,
            ]
            # Its live containers, and once more those that ended since (their last report's figures).
            live = set(s.live.get(a.id, ()))
            ended = self._live_containers.get(a.id, set()) - live
            self._live_containers[a.id] = live
            for cid in live | ended:
                if (c := s.containers.get(cid)) is not None:
                    containers_out[cid] = [c.updated_at, c.cpu_percent, c.memory_bytes, c.pull_progress, c.docker_id,
                                           c.figures.model_dump(mode="json") if c.figures else None]  # fmt: skip
        if not agents_out:
            return None
        return zlib.compress(json.dumps({"agents": agents_out, "containers": containers_out}).encode(), 1)


def take_live(r: Replica, data: dict[str, Any]) -> None:
    """Another replica's live data into memory (what is newer than this one's)."""
    from octotui.server.domain import agents, lifecycle

    s = r.s
    now = time.time()
    for agent_id, (seen, host, docker) in data.get("agents", {}).items():
        a = s.agents.get(agent_id)
        if a is None or (a.last_seen is not None and a.last_seen >= seen):
            continue
        a.last_seen = seen
        a.health_ref = max(a.health_ref, seen)
        r._remote_seen[agent_id] = seen
        if host is not None:
            a.host = HostSample.model_validate(host)
            s.hosts.add(agent_id, [a.host])
        if docker is not None:
            a.docker = DockerInfo.model_validate(docker)
        a.status = agents.status(s, a, now)
        s.feed.touch("agent", agent_id)
    for cid, (updated, cpu, mem, pull, docker_id, figures) in data.get("containers", {}).items():
        c = s.containers.get(cid)
        if c is None or c.updated_at > updated:
            continue
        c.cpu_percent, c.memory_bytes, c.pull_progress = cpu, mem, pull
        c.docker_id = docker_id or c.docker_id
        if figures is not None:
            c.figures = JMeterFigures.model_validate(figures)
        c.updated_at = updated
        lifecycle.touch_container(s, c)


# --- changes into memory ---------------------------------------------------------------------------


def apply(s: ServerState, d: Delta) -> None:
    """Take records another replica changed (as read from the tables) into memory; a record changed
    here and not written yet keeps this replica's version (written after, it wins everywhere)."""
    for pid, p in d.providers.items():
        _provider(s, pid, p)
    for agent_id, a in d.agents.items():
        _agent(s, agent_id, a)
    for test_id, (t, cs) in d.tests.items():
        _test(s, test_id, t, cs)
    for c in d.containers.values():
        if c is not None:
            _container(s, c)
    if d.operators is not None:
        s.tokens.replace_operators(d.operators)
    if d.monitors:
        from octotui.server.domain import monitors

        monitors.take(s, d.monitors)  # after the agents: a monitor's agent is known by then
    for command_id in d.done:
        s.commands.discard(command_id)
    for agent_id, cmds in d.commands.items():
        if agent_id not in s.agents:
            continue
        done = set(s.unsaved.done_commands)
        for cmd in cmds:
            if s.commands.get(agent_id, cmd.id) is None and cmd.id not in s.acked and cmd.id not in done:
                s.commands.push(cmd)  # wakes the agent's long poll here


def _provider(s: ServerState, pid: str, p: ProviderRec | None) -> None:
    old = s.providers.get(pid)
    if old is not None:
        s.tokens.remove(old.token_hash)
    if p is None:
        if old is not None:
            del s.providers[pid]
            s.feed.remove("provider", pid)
        return
    if old is None:
        s.providers[pid] = old = p
    old.name, old.token_hash = p.name, p.token_hash
    s.tokens.add(p.token_hash, "provider", pid)
    s.feed.touch("provider", pid)


def _agent(s: ServerState, agent_id: str, a: AgentRec | None) -> None:
    from octotui.server.domain import agents, fleet

    old = s.agents.get(agent_id)
    if old is not None:
        s.tokens.remove(old.token_hash)
        agents.count_name(s, old, -1)
        fleet.count_machine(s, old, -1)
    if a is None:
        if old is not None:
            del s.agents[agent_id]
            s.commands.drop_agent(agent_id)
            s.hosts.drop(agent_id)
            s.feed.remove("agent", agent_id)
        return
    if old is None:
        a.health_ref = a.last_seen or time.time()
        s.agents[agent_id] = old = a
    else:
        for name in _AGENT_FIELDS:
            setattr(old, name, getattr(a, name))
        if a.last_seen is not None and (old.last_seen is None or a.last_seen > old.last_seen):
            old.last_seen = a.last_seen
    old.status = agents.status(s, old, time.time())
    s.tokens.add(old.token_hash, "agent", agent_id)
    agents.count_name(s, old, +1)
    fleet.count_machine(s, old, +1)
    s.feed.touch("agent", agent_id)


def _test(s: ServerState, test_id: str, t: TestRec | None, cs: list[ContainerRec]) -> None:
    old = s.tests.get(test_id)
    if t is None:
        if old is None or test_id in s.unsaved.tests:
            return
        del s.tests[test_id]
        for cid in old.container_ids:
            if (c := s.containers.pop(cid, None)) is not None:
                s.live.get(c.agent_id, set()).discard(cid)
                s.labels.pop(cid, None)
        s.series.drop(test_id)
        s.launch_keys.forget_test(test_id)
        s.feed.remove("test", test_id)
        return
    if old is None:
        s.tests[test_id] = t
    elif test_id not in s.unsaved.tests and ("test", test_id) not in s.store.writing:
        for name in _TEST_FIELDS:
            setattr(old, name, getattr(t, name))
    for c in cs:
        _container(s, c)
    s.feed.touch("test", test_id)


def _container(s: ServerState, c: ContainerRec) -> None:
    from octotui.server.domain import lifecycle

    if c.id in s.unsaved.containers or ("container", c.id) in s.store.writing:
        return
    old = s.containers.get(c.id)
    if old is None:
        s.containers[c.id] = old = c
    else:
        figures = old.figures
        for name in _CONTAINER_FIELDS:
            setattr(old, name, getattr(c, name))
        if old.figures is None:
            old.figures = figures
    if old.state == "stopping" and old.stopping_since is None:
        old.stopping_since = time.time()
    live = s.live.setdefault(old.agent_id, set())
    was = len(live)
    if old.state in lifecycle.TERMINAL:
        live.discard(old.id)
    else:
        live.add(old.id)
    if len(live) != was and old.agent_id in s.agents:
        s.feed.touch("agent", old.agent_id)
    lifecycle.touch_container(s, old)


async def start(s: ServerState) -> Replica | None:
    """The replica of a server on PostgreSQL, started; None on SQLite (one server alone)."""
    url = s.store.database
    if url is None:
        return None
    replica = Replica(s, url)
    replica.start()
    return replica
