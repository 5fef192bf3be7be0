"""A request body streamed to a file of the server's disk: never whole in memory, hashed and written
a block at a time in a worker thread (the event loop only gathers chunks), fsynced before it is
used. Shared by file uploads and JTL uploads.

The spool file (``.<id>.<random>.part`` beside its final place; ``.fetch`` for a copy read from the
database) is removed when the upload ends either way; one cut by a kill of the server is not, so the
server's start removes those an earlier run left (:func:`remove_stale`; the first upload, list or
fetch of files does it too where a start did not: in-process apps of tests)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import BinaryIO

from octotui.server.errors import TooLarge

#: Bytes gathered before one write (and hash) in the worker thread.
BLOCK = 1024 * 1024
#: When this server started (this module loaded): a spool file last written before is an earlier run's.
STARTED = time.time()
#: How the spool files end (uploads of files and JTLs; copies fetched from the database).
SPOOL_SUFFIXES = (".part", ".fetch")

log = logging.getLogger("octotui.server")
_swept: set[Path] = set()


def _stale(folder: Path) -> list[Path]:
    """The spool files under ``folder`` (hidden, a spool suffix) last written before this run."""
    found = []
    for path in folder.rglob(".*"):
        if path.suffix not in SPOOL_SUFFIXES:
            continue
        try:
            if path.is_file() and not path.is_symlink() and path.stat().st_mtime < STARTED:
                found.append(path)
        except OSError:  # gone meanwhile
            continue
    return found


def _remove_stale(folders: tuple[Path, ...]) -> None:
    removed, size = [], 0
    for folder in folders:
        for path in _stale(folder):
            try:
                n = path.stat().st_size
                path.unlink()
            except OSError as exc:
                log.warning("cannot remove the spool file %s an earlier run left: %s", path, exc)
                continue
            removed.append(path.name)
            size += n
    if removed:
        names = ", ".join(removed[:10]) + (" …" if len(removed) > 10 else "")
        log.info("removed %d spool file(s) of uploads an earlier run did not finish (%.1f MiB): %s",
                 len(removed), size / 1024**2, names)  # fmt: skip


async def remove_stale(*folders: Path) -> None:
    """Remove the spool files of uploads cut by a kill of an earlier run, under ``folders``, once per
    folder and run (the first call; the later ones return at once). Files this run writes are kept."""
    todo = tuple(f for f in folders if f not in _swept)
    if not todo:
        return
    _swept.update(todo)
    await asyncio.to_thread(_remove_stale, todo)


def _write(f: BinaryIO, digest: hashlib._Hash, feed: Callable[[bytes], None] | None, data: bytes) -> None:
    digest.update(data)  # hashlib lets other threads run while it hashes large buffers
    if feed is not None:
        feed(data)
    f.write(data)


def _close(f: BinaryIO, sync: bool) -> None:
    try:
        if sync:
            f.flush()
            os.fsync(f.fileno())
    finally:
        f.close()


async def spool(
    body: AsyncIterator[bytes], tmp: Path, limit: int, refusal: str, feed: Callable[[bytes], None] | None = None
) -> tuple[int, str]:
    """Write ``body`` to ``tmp`` (made here, exclusively), every block also given to ``feed`` (in the
    worker thread, in order); (size, SHA-256 hex) once it is on disk. More than ``limit`` bytes:
    :class:`TooLarge` with ``refusal``. The caller renames ``tmp`` into place or removes it."""
    digest = hashlib.sha256()
    size = 0
    await asyncio.to_thread(tmp.parent.mkdir, parents=True, exist_ok=True)
    opened: BinaryIO = await asyncio.to_thread(open, tmp, "xb")
    f: BinaryIO | None = opened
    try:
        pending = bytearray()
        async for chunk in body:
            size += len(chunk)
            if size > limit:
                raise TooLarge(refusal)
            pending += chunk
            if len(pending) >= BLOCK:
                data, pending = bytes(pending), bytearray()
                await asyncio.to_thread(_write, opened, digest, feed, data)
        await asyncio.to_thread(_write, opened, digest, feed, bytes(pending))
        f = None
        await asyncio.to_thread(_close, opened, True)
    finally:
        if f is not None:
            await asyncio.to_thread(_close, f, False)
    return size, digest.hexdigest()
