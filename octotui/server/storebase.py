"""The store's connection: SQLite (a file in the data dir) or PostgreSQL (``--database``), one
connection used only from one worker thread, so the database is never touched from the event loop
and writes keep the order they were submitted in.

The store's code is written once, in SQLite's dialect, against ``self.db``: on PostgreSQL that is a
:class:`~octotui.server.pgstore.PgDb`, which offers the same calls and translates the dialect (see
pgstore.py). Transactions go through :meth:`Connection._tx` and ``_immediate`` on both."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast

from octotui.server.pgstore import PgDb, is_url

T = TypeVar("T")


class Connection:
    """The connection and its worker thread, shared by the store's parts.

    ``path``: the SQLite file; ``database``: a ``postgresql://`` URL, which then holds the state instead.
    """

    def __init__(self, path: Path, database: str | None = None) -> None:
        self.path = path
        self.database = database if is_url(database) else None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="octotui-store")
        self._db: sqlite3.Connection | None = None
        self._pg: PgDb | None = PgDb(self.database) if self.database else None
        #: With --database: the newest replicas' change when the start-up snapshot was read.
        self.changes_seen: int | None = None
        self._data_version: int | None = None
        #: Replicas on one PostgreSQL (``replica.py``): when ``origin`` is set, each transaction writes
        #: the records it changed (``note``) to ``replica_changes`` and NOTIFYs the others, atomically.
        self.origin: str | None = None
        self._journal: list[tuple[str, str]] = []
        #: Records whose write is submitted but not committed yet (kind, key): a change another replica
        #: made to one of them is not taken over this one's (which lands after it, and wins).
        self.writing: dict[tuple[str, str], int] = {}

    @property
    def where(self) -> str:
        """The store as it may be shown (a URL without its password, or the file)."""
        return self._pg.where if self._pg is not None else str(self.path)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    @property
    def db(self) -> sqlite3.Connection:
        if self._pg is not None:
            # The adapter offers the calls of sqlite3.Connection the store makes (pgstore.py).
            return cast(sqlite3.Connection, self._pg)
        assert self._db is not None, "store is not open"
        return self._db

    def _begin(self, immediate: bool) -> None:
        if self._pg is not None:
            self._pg.begin(immediate)
        else:
            self.db.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")

    def _end(self, ok: bool) -> None:
        if self._pg is not None:
            self._pg.commit() if ok else self._pg.rollback()
        else:
            self.db.execute("COMMIT" if ok else "ROLLBACK")

    def note(self, kind: str, key: str) -> None:
        """In a transaction (on the store's thread): record ``kind`` ``key`` changed, for the other
        replicas (nothing without replicas, e.g. on SQLite)."""
        if self.origin is not None:
            self._journal.append((kind, key))

    def _in_tx(self, fn: Callable[[sqlite3.Connection], T], immediate: bool) -> T:
        self._begin(immediate)
        self._journal = []
        try:
            result = fn(self.db)
            if self._journal and self.origin is not None:
                # In the same transaction: the others learn of a change only once it is committed,
                # and a change is never committed without them learning of it.
                rows = [(self.origin, kind, key) for kind, key in dict.fromkeys(self._journal)]
                self.db.executemany("INSERT INTO replica_changes (origin, kind, key) VALUES (?, ?, ?)", rows)
                self.db.execute("SELECT pg_notify('octotui_changes', ?)", (self.origin,))
        except BaseException:
            self._journal = []
            self._end(False)
            raise
        self._journal = []
        self._end(True)
        return result

    def writing_begin(self, keys: list[tuple[str, str]]) -> None:
        """On the event loop, before a write of ``keys`` is submitted (see :attr:`writing`)."""
        for k in keys:
            self.writing[k] = self.writing.get(k, 0) + 1

    def writing_end(self, keys: list[tuple[str, str]]) -> None:
        for k in keys:
            left = self.writing.get(k, 0) - 1
            if left > 0:
                self.writing[k] = left
            else:
                self.writing.pop(k, None)

    def _tx(self, fn: Callable[[sqlite3.Connection], None]) -> None:
        self._in_tx(fn, immediate=False)

    def _immediate(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A transaction that takes the write lock at once: two processes (the server and the CLI, or
        two replicas) never both pass a check made before its write."""
        return self._in_tx(fn, immediate=True)
