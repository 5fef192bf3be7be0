"""Ended containers' JTLs sent to the server, then removed here: the agent's disk stays bounded.

A container's JTL goes up once the container has ended and a heartbeat carrying its end was
answered (the server then knows it ended). One upload at a time, in a task of its own: heartbeats
and polls never wait for it. The JTL is gzip-compressed in a thread to a spool file first (its
SHA-256 goes in a header, so it must be known before the first byte is sent), then streamed from it.

The server's answer decides what follows:

========================  =========================================================================
2xx (204: stored)         the container's work folder (plan, JTL, JMeter log) is removed, unless
                          ``--keep-results``; the container is forgotten
5xx, unreachable, 401     tried again with a capped backoff (401: the heartbeat registers again)
404 ``Not Found``         a server without this route (older): nothing more is sent until the
                          agent's next start, which tries again (once)
other 4xx                 logged, files kept, not tried again (404 naming the container: the
                          server does not know it; 403, 409: not this agent's, or not ended
                          there; 413: over the server's limit; 422: a checksum mismatch)
========================  =========================================================================

The containers still to send are kept in ``STATE_DIR/uploads.json``: an agent restarted resumes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import shutil
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.link import AuthRefused, Gone, LinkError, Refused, ServerLink, ServerUnreachable
from agent.pacing import backoff_delay
from agent.records import jtl_path
from agent.state import Identity, write_json

log = logging.getLogger("octotui.agent.uploads")

#: Bytes of JTL compressed per step (memory stays about this, whatever the file's size).
COMPRESS_CHUNK = 1024 * 1024
#: Containers whose upload is over (stored or refused) remembered at most, so that an ended
#: container reported again after a restart is not sent twice.
_REMEMBERED_DONE = 2000
#: The folder (under the work dir) of the compressed files being sent; a container id never starts
#: with a dot, so it cannot be a container's work folder.
SPOOL = ".uploads"
#: Backoff of a failed upload: from this, doubling, capped at :data:`RETRY_CAP`.
RETRY_START = 2.0
RETRY_CAP = 300.0


@dataclass(frozen=True, slots=True)
class Compressed:
    """A JTL compressed to a gzip file: its path, size and the SHA-256 (hex) of its bytes."""

    path: Path
    size: int
    sha256: str


class Abandoned(Exception):
    """The agent is stopping: a compression in its thread gives up rather than hold the exit."""


def compress(source: Path, target: Path, abandon: threading.Event | None = None) -> Compressed:
    """Gzip ``source`` into ``target`` chunk by chunk, hashing what is written (in a thread); raises
    :class:`Abandoned` as soon as ``abandon`` is set."""
    digest = hashlib.sha256()
    size = 0
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: the gzip format
    target.parent.mkdir(parents=True, exist_ok=True)
    with source.open("rb") as reader, target.open("wb") as writer:
        while True:
            if abandon is not None and abandon.is_set():
                raise Abandoned(str(source))
            chunk = reader.read(COMPRESS_CHUNK)
            packed = packer.compress(chunk) if chunk else packer.flush()
            if packed:
                digest.update(packed)
                writer.write(packed)
                size += len(packed)
            if not chunk:
                break
    return Compressed(target, size, digest.hexdigest())


class UploadQueue:
    """The containers whose JTL is still to send, and those whose upload is over, kept in ``path``.

    Touched from the event loop and from threads (saves): every access holds its lock.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.pending: OrderedDict[str, None] = OrderedDict()
        self.done: OrderedDict[str, None] = OrderedDict()
        if path is None or not path.exists():
            return
        try:
            data = json.loads(path.read_text())
            self.pending = OrderedDict.fromkeys(str(cid) for cid in data.get("pending", []))
            self.done = OrderedDict.fromkeys(str(cid) for cid in data.get("done", []))
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.warning("ignoring unreadable %s: %s", path, exc)

    def known(self, container_id: str) -> bool:
        with self._lock:
            return container_id in self.pending or container_id in self.done

    def add(self, container_ids: Iterable[str]) -> list[str]:
        """Queue these containers (those not queued or done already); the ones added."""
        with self._lock:
            added = [cid for cid in container_ids if cid not in self.pending and cid not in self.done]
            self.pending.update(OrderedDict.fromkeys(added))
            return added

    def finish(self, container_id: str) -> None:
        """This container's upload is over (stored, or refused for good)."""
        with self._lock:
            self.pending.pop(container_id, None)
            self.done[container_id] = None
            while len(self.done) > _REMEMBERED_DONE:
                self.done.popitem(last=False)

    def rotate(self, container_id: str) -> None:
        """Put this container last: one that keeps failing does not hold the others back."""
        with self._lock:
            if container_id in self.pending:
                self.pending.move_to_end(container_id)

    def items(self) -> list[str]:
        with self._lock:
            return list(self.pending)

    def save(self) -> None:
        """Write the file (logged, not raised, when it cannot be); in a thread."""
        if self.path is None:
            return
        with self._lock:
            data = {"pending": list(self.pending), "done": list(self.done)}
        try:
            write_json(self.path, data)
        except OSError as exc:
            log.warning("cannot save %s: %s", self.path, exc)


class Uploader:
    """Sends ended containers' JTLs one at a time (:meth:`run`), fed by :meth:`ended`."""

    def __init__(
        self,
        link: ServerLink,
        identity: Callable[[], Identity],
        work_dir: Path,
        queue_file: Path | None,
        keep_results: bool = False,
        retry_start: float = RETRY_START,
        retry_cap: float = RETRY_CAP,
    ) -> None:
        self.link = link
        self.identity = identity
        self.work_dir = work_dir
        self.spool = work_dir / SPOOL
        self.keep_results = keep_results
        self.retry_start = retry_start
        self.retry_cap = retry_cap
        self.queue = UploadQueue(queue_file)
        #: The server has no upload route (404 Not Found): nothing is sent until the next start.
        self._no_route = False
        self._attempt = 0
        self._hold_until = 0.0
        self._wake = asyncio.Event()
        #: Set when :meth:`run` ends: a compression still running in its thread stops.
        self._abandon = threading.Event()
        #: What happened to each container this start ("stored", "kept", "later", "retry"), for tests and logs.
        self.outcomes: dict[str, str] = {}

    async def ended(self, container_ids: Iterable[str]) -> None:
        """These containers ended and the server answered a heartbeat saying so: queue their JTLs."""
        fresh = [cid for cid in container_ids if not self.queue.known(cid)]
        if not fresh:
            return
        if self.queue.add(fresh):
            await asyncio.to_thread(self.queue.save)
            self._wake.set()

    def _next(self) -> str | None:
        if self._no_route:
            return None
        items = self.queue.items()
        return items[0] if items else None

    async def run(self) -> None:
        """Send what is queued, one at a time, for ever (cancel it to stop)."""
        await asyncio.to_thread(shutil.rmtree, self.spool, True)  # what a stopped agent left half sent
        try:
            await self._serve()
        finally:
            self._abandon.set()

    async def _serve(self) -> None:
        while True:
            hold = self._hold_until - time.monotonic()
            container_id = self._next() if hold <= 0 else None
            if container_id is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=hold if hold > 0 else None)
                continue
            try:
                await self._upload(container_id)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not end the uploads for good: count it as a failure
                log.exception("upload of the JTL of container %s failed", container_id)
                self._retry(container_id)

    def _retry(self, container_id: str) -> None:
        delay = backoff_delay(self._attempt, self.retry_start, self.retry_cap)
        self._attempt += 1
        self._hold_until = time.monotonic() + delay
        self.queue.rotate(container_id)
        self.outcomes[container_id] = "retry"

    async def _upload(self, container_id: str) -> None:
        source = jtl_path(self.work_dir, container_id)
        if not await asyncio.to_thread(source.is_file):
            log.debug("container %s has no JTL to send", container_id)
            await self._finish(container_id, "none")
            return
        target = self.spool / f"{container_id}.jtl.gz"
        try:
            try:
                packed = await asyncio.to_thread(compress, source, target, self._abandon)
            except OSError as exc:  # e.g. a full disk for the spool file: later
                log.warning("cannot compress the JTL of container %s: %s; trying again later", container_id, exc)
                self._retry(container_id)
                return
            started = time.monotonic()
            try:
                await self.link.upload_jtl(self.identity(), container_id, packed.path, packed.size, packed.sha256)
            except LinkError as exc:
                await self._refused(container_id, exc)
                return
            self._attempt = 0
            log.info("JTL of container %s stored by the server (%d bytes gzip, %.1f s)%s", container_id,
                     packed.size, time.monotonic() - started,
                     "; work folder kept (--keep-results)" if self.keep_results else "")  # fmt: skip
            with contextlib.suppress(OSError):  # the spool first: "stored" means nothing is left over
                await asyncio.to_thread(target.unlink, True)
            if not self.keep_results:
                await asyncio.to_thread(shutil.rmtree, self.work_dir / container_id, True)
            await self._finish(container_id, "stored")
        finally:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(target.unlink, True)

    async def _finish(self, container_id: str, outcome: str) -> None:
        self.queue.finish(container_id)
        await asyncio.to_thread(self.queue.save)
        self.outcomes[container_id] = outcome  # once it is on disk: an outcome is what a restart finds

    async def _refused(self, container_id: str, exc: LinkError) -> None:
        """What follows a failed upload, by the server's answer (the table in the module's docstring)."""
        if isinstance(exc, ServerUnreachable) or (isinstance(exc, AuthRefused) and exc.status == 401):
            self._retry(container_id)
            log.info("JTL of container %s not sent (%s): trying again in %.0f s", container_id, exc,
                     max(0.0, self._hold_until - time.monotonic()))  # fmt: skip
            return
        self._attempt = 0
        if isinstance(exc, Gone) and exc.detail == "Not Found":  # the framework's own 404: no such route
            self.outcomes[container_id] = "later"
            self._no_route = True
            log.warning("the server does not take JTL uploads (404): JTLs kept here, tried again at the "
                        "agent's next start")  # fmt: skip
            return
        status: Any = exc.status if isinstance(exc, Refused) else "?"
        log.warning("JTL of container %s refused (%s: %s): its files are kept, not sent again", container_id,
                    status, getattr(exc, "detail", exc))  # fmt: skip
        await self._finish(container_id, "kept")
