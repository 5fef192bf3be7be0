"""The bytes of uploaded files and JTLs, wherever the server keeps its state.

**Alone, on SQLite**: the file under the data dir *is* the bytes (``files/<id>``,
``results/<test>/<container>.jtl.gz``), as it always was: :meth:`Blobs.put` and :meth:`Blobs.drop`
do nothing, :meth:`Blobs.ensure` hands the path back.

**On PostgreSQL** (``--database``, replicas on one database): the ``blobs`` table is the truth, in
chunks of :data:`CHUNK` bytes (``kind`` 'file' or 'jtl', ``key`` the file id or
``<test id>/<container id>``, ``seq`` from 0), written in ONE transaction (every chunk, or none)
once the upload is complete and checked. Each replica's data dir keeps a copy as a cache: a copy
missing, or whose SHA-256 is not the record's (corrupted, an older upload), is read back from the
database a chunk at a time (a server-side cursor: never a whole file in memory) into a temporary
file, checked, renamed into place. A copy is hashed once per (size, mtime, inode): not on every read.

Callers check the record (``files``, ``container_jtl``) in the database before they serve a copy, so
a replica that did not see a deletion never serves a deleted file; its copy is removed at that check.

Each transfer takes a connection of its own, in one of :data:`WORKERS` threads (more wait their turn,
their bytes on disk meanwhile): a 1 GiB upload never holds the store's connection, nor more than
:data:`WORKERS` of PostgreSQL's connections per server.

**Cost in PostgreSQL**: a file's size (TOAST compresses a text CSV's chunks, not gzip JTLs nor binary
files), written once more to the WAL (and to each standby); one row per MiB. Each replica's data dir
holds its size again, as the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from octotui.server.pgstore import CONNECT_TIMEOUT, StoreUnavailable, is_url, redact

log = logging.getLogger("octotui.server")

#: Bytes per row of ``blobs`` (and read from disk at a time when stored).
CHUNK = 1024 * 1024
#: Rows a reading cursor fetches at once.
_FETCH = 2
#: Blob transfers to or from PostgreSQL at once, per server (each holds a connection while it runs).
WORKERS = 4
#: Seconds between two sweeps of a data dir's copies (:meth:`Blobs.sweep`), and how old a copy
#: without a record must be to go (an upload puts its copy in place just before its record).
SWEEP_EVERY = 60.0
SWEEP_GRACE = 600.0
#: The threads of every transfer of this process (one server: one database).
_POOL = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="octotui-blobs")
T = TypeVar("T")


class BlobError(sqlite3.OperationalError):
    """The bytes of a record are not in the database (or not the record's): ``str()`` says which
    (answered 503 like the store's other failures)."""


def jtl_key(test_id: str, container_id: str) -> str:
    return f"{test_id}/{container_id}"


def sha256_of(path: Path) -> str:
    """The SHA-256 (hex) of a file, read a chunk at a time (blocking)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while data := f.read(CHUNK):
            digest.update(data)
    return digest.hexdigest()


class Blobs:
    """Files' and JTLs' bytes in PostgreSQL (``url``), or on disk only (``url`` None)."""

    def __init__(self, url: str | None) -> None:
        self.url = url if is_url(url) else None
        #: Copies checked: path -> (size, mtime_ns, inode, sha256).
        self._checked: dict[Path, tuple[int, int, int, str]] = {}
        self._next_sweep = 0.0

    @property
    def shared(self) -> bool:
        """True when the database holds the bytes (the disk is a cache)."""
        return self.url is not None

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn`` in one of this server's :data:`WORKERS` blob threads (a connection each at most: more
        uploads at once wait their turn); PostgreSQL failing meanwhile is :class:`StoreUnavailable`."""
        try:
            return await asyncio.get_running_loop().run_in_executor(_POOL, fn, *args)
        except psycopg.OperationalError as exc:
            assert self.url is not None
            raise StoreUnavailable(f"PostgreSQL at {redact(self.url)} failed ({exc})") from None

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        assert self.url is not None
        try:
            return psycopg.connect(self.url, connect_timeout=CONNECT_TIMEOUT, application_name="octotui-blobs")
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"PostgreSQL at {redact(self.url)} is unreachable ({exc})") from None

    # --- in ------------------------------------------------------------------------------------

    async def put(self, kind: str, key: str, path: Path) -> None:
        """Store the bytes of ``path`` (complete, checked) under ``kind``/``key``, in place of any
        earlier ones, in one transaction (nothing on SQLite)."""
        if self.url is None:
            return
        await self._call(self._put, kind, key, path)

    def mark(self, path: Path, sha256: str) -> None:
        """``path`` (just put in place) holds ``sha256``: not hashed again at its next read."""
        if self.url is not None:
            self._remember(path, sha256)

    def _put(self, kind: str, key: str, path: Path) -> None:
        with self._connect() as conn, conn.transaction(), path.open("rb") as f:
            conn.execute("DELETE FROM blobs WHERE kind = %s AND key = %s", (kind, key))
            seq = 0
            while data := f.read(CHUNK):
                conn.execute("INSERT INTO blobs (kind, key, seq, data) VALUES (%s, %s, %s, %s)", (kind, key, seq, data))
                seq += 1

    async def drop(self, kind: str, keys: list[str]) -> None:
        """Delete the bytes of ``keys`` (nothing on SQLite)."""
        if self.url is None or not keys:
            return
        await self._call(self._drop, kind, keys)

    def _drop(self, kind: str, keys: list[str]) -> None:
        with self._connect() as conn, conn.transaction():
            conn.execute("DELETE FROM blobs WHERE kind = %s AND key = ANY(%s)", (kind, keys))

    async def drop_prefix(self, kind: str, prefix: str) -> None:
        """Delete the bytes of every key starting with ``prefix`` (e.g. a test's JTLs: ``<test id>/``)."""
        if self.url is None:
            return
        await self._call(self._drop_prefix, kind, prefix)

    def _drop_prefix(self, kind: str, prefix: str) -> None:
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)  # every key >= prefix and < upper starts with prefix
        with self._connect() as conn, conn.transaction():
            conn.execute("DELETE FROM blobs WHERE kind = %s AND key >= %s AND key < %s", (kind, prefix, upper))

    # --- out -----------------------------------------------------------------------------------

    async def ensure(self, kind: str, key: str, path: Path, sha256: str) -> Path:
        """``path`` holding the bytes whose SHA-256 is ``sha256`` (the record's): the copy on disk when
        it is that, else read back from the database. :class:`BlobError` when the database does not
        hold them. On SQLite: ``path`` as it is."""
        if self.url is None:
            return path
        if await asyncio.to_thread(self._copy_ok, path, sha256):
            return path
        await self._call(self._fetch, kind, key, path, sha256)
        return path

    def _stat(self, path: Path) -> tuple[int, int, int] | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        return st.st_size, st.st_mtime_ns, st.st_ino

    def _remember(self, path: Path, sha256: str) -> None:
        st = self._stat(path)
        if st is not None:
            self._checked[path] = (*st, sha256)

    def _copy_ok(self, path: Path, sha256: str) -> bool:
        st = self._stat(path)
        if st is None:
            return False
        known = self._checked.get(path)
        if known is not None and known[:3] == st:
            return known[3] == sha256
        got = sha256_of(path)
        self._checked[path] = (*st, got)
        if got != sha256:
            log.warning(
                "cached copy %s is not the stored bytes (sha256 %s…): read again from the database", path, got[:12]
            )
        return got == sha256

    def _fetch(self, kind: str, key: str, path: Path, sha256: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.fetch")
        digest = hashlib.sha256()
        rows = 0
        try:
            with self._connect() as conn, conn.transaction(), tmp.open("xb") as out:
                with conn.cursor(name="octotui_blob") as cur:
                    cur.itersize = _FETCH
                    cur.execute("SELECT data FROM blobs WHERE kind = %s AND key = %s ORDER BY seq", (kind, key))
                    for (data,) in cur:
                        chunk = bytes(data)  # type: ignore[call-overload]
                        digest.update(chunk)
                        out.write(chunk)
                        rows += 1
                out.flush()
                os.fsync(out.fileno())
            if digest.hexdigest() != sha256:
                raise BlobError(
                    f"the stored bytes of {kind} {key} ({rows} chunk(s)) are not the record's (sha256 {sha256[:12]}…)"
                )
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        self._remember(path, sha256)
        log.info("%s %s read from the database into %s", kind, key, path)

    async def sweep(self, files_dir: Path, results_dir: Path) -> int:
        """Remove the copies whose record is gone from the database (deleted, pruned, their test
        deleted through another replica), at most once per :data:`SWEEP_EVERY`; how many went.
        Called on the way of the file and JTL routes: every replica's copies follow within a minute
        of its next such request."""
        if self.url is None or time.monotonic() < self._next_sweep:
            return 0
        self._next_sweep = time.monotonic() + SWEEP_EVERY
        return await self._call(self._sweep, files_dir, results_dir)

    def _sweep(self, files_dir: Path, results_dir: Path) -> int:
        with self._connect() as conn:
            files = {r[0] for r in conn.execute("SELECT id FROM files")}
            jtls = {
                r[0]
                for r in conn.execute(
                    "SELECT test_id || '/' || container_id FROM container_jtl WHERE pruned_at IS NULL"
                )
            }
        before = time.time() - SWEEP_GRACE
        gone = 0
        copies = [(p, p.name) for p in files_dir.glob("[!.]*")]
        copies += [(p, f"{p.parent.name}/{p.name.removesuffix('.jtl.gz')}") for p in results_dir.glob("*/[!.]*.jtl.gz")]
        for path, key in copies:
            with contextlib.suppress(OSError):
                if key not in (files if path.parent == files_dir else jtls) and path.stat().st_mtime < before:
                    self.forget(path)
                    gone += 1
                    if path.parent != files_dir:
                        path.parent.rmdir()  # the test's folder, once empty
        if gone:
            log.info("%d copies of deleted files or JTLs removed from this data dir", gone)
        return gone

    def forget(self, path: Path) -> None:
        """Remove a copy whose record is gone (blocking)."""
        self._checked.pop(path, None)
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


_ALL: dict[str | None, Blobs] = {}


def of(url: str | None) -> Blobs:
    """The :class:`Blobs` of a server's ``--database`` (one per URL: its checked copies shared)."""
    key = url if is_url(url) else None
    found = _ALL.get(key)
    if found is None:
        found = _ALL[key] = Blobs(key)
    return found
