"""A request body streamed to a file of the server's disk: never whole in memory, hashed and written
a block at a time in a worker thread (the event loop only gathers chunks), fsynced before it is
used. Shared by file uploads and JTL uploads."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import BinaryIO

from octotui.server.errors import TooLarge

#: Bytes gathered before one write (and hash) in the worker thread.
BLOCK = 1024 * 1024


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
