"""The files a launch brings (CSV data sets, other resources), fetched from the server and placed
beside the plan: ``WORK/C/plan/NAME``, which the container reads as ``/plan/NAME`` (JMeter resolves
a relative CSV file name against the plan's folder, so ``users.csv`` and ``/plan/users.csv`` both work).

Each file is fetched over the agent's own link (:meth:`agent.link.ServerLink.download`: its proxy,
TLS and token), streamed to disk, then checked against the size and SHA-256 the launch names; a
mismatch (or a connection cut) is tried once more, then the launch fails naming the file. Files are
cached by SHA-256 in ``WORK/.files``: the containers of one test on one agent that get the same
bytes (a copied file) fetch them once, and a container's file is a hard link to its cache entry. An
entry goes when no live container needs it any more (:meth:`TestFiles.prune`); what is placed in a
container's plan folder goes with it.

Names and paths are checked again here, whatever the server sent: a name is a plain file name,
never a path, and a path is one under the server's API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from agent.link import Fetched, LinkError, Refused, ServerLink, api_path
from agent.records import LaunchError, Tracked
from agent.state import Identity
from octotui.protocol import LaunchFile, LaunchSpec

log = logging.getLogger("octotui.agent.files")

#: The cache's folder under the work dir; a container id never starts with a dot.
CACHE = ".files"
#: The contract's rule for a file name (``FileName``), without ``.`` and ``..``.
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9._-][A-Za-z0-9._ -]{0,254}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: Tries of one file: the first, and one more after a mismatch or a cut.
ATTEMPTS = 2


def checked_files(spec: LaunchSpec) -> list[LaunchFile]:
    """The files of ``spec``; :class:`LaunchError` naming the first one the agent must not place."""
    seen: set[str] = set()
    for item in spec.files:
        name = item.name
        if not _PLAIN_NAME.match(name) or name in (".", "..") or "/" in name or "\\" in name:
            raise LaunchError(f"file name {name[:100]!r} refused: a plain file name is expected, never a path")
        if name == spec.plan_name or name in seen:
            raise LaunchError(f"file name {name!r} refused: the launch names it twice, or it is the plan's")
        seen.add(name)
        if not _SHA256.match(item.sha256):
            raise LaunchError(f"file {name}: {item.sha256[:80]!r} is not a SHA-256")
        try:
            api_path(item.path)
        except ValueError as exc:
            raise LaunchError(f"file {name}: {exc}") from None
    return list(spec.files)


def _place(source: Path, target: Path) -> None:
    """``source`` at ``target``: a hard link (no second copy on disk), a copy where links cannot be made."""
    with contextlib.suppress(FileNotFoundError):
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _complete(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except OSError:
        return False


class TestFiles:
    """Fetches, caches and places the files of launches (one per agent); :meth:`prune` frees the cache."""

    __test__ = False  # not a pytest class, whatever its name

    def __init__(self, link: ServerLink, identity: Callable[[], Identity], work_dir: Path) -> None:
        self.link = link
        self.identity = identity
        self.cache = work_dir / CACHE
        self._locks: dict[str, asyncio.Lock] = {}
        #: Files fetched from the server and files taken from the cache, this start (tests and logs).
        self.fetched = 0
        self.reused = 0

    async def place(self, tracked: Tracked, files: list[LaunchFile], plan_dir: Path) -> None:
        """Fetch (or find in the cache) and place every file of a launch in ``plan_dir``; the bytes
        done so far go to ``tracked.pull_progress``. Run it as a task a stop can cancel."""
        total = sum(item.size for item in files)
        done = 0

        def progress(written: int) -> None:
            if total:
                tracked.pull_progress = min((done + written) / total, 1.0)

        await asyncio.to_thread(self.cache.mkdir, parents=True, exist_ok=True)
        for item in files:
            cached = await self._cached(tracked, item, progress)
            await asyncio.to_thread(_place, cached, plan_dir / item.name)
            done += item.size
            progress(0)
        if files:
            tracked.pull_progress = 1.0

    async def _cached(self, tracked: Tracked, item: LaunchFile, progress: Callable[[int], None]) -> Path:
        """The cache entry of ``item``, fetched when it is not there yet (once for concurrent launches)."""
        entry = self.cache / item.sha256
        lock = self._locks.setdefault(item.sha256, asyncio.Lock())
        async with lock:
            if await asyncio.to_thread(_complete, entry, item.size):
                self.reused += 1
                log.info("container %s: file %s from the cache", tracked.container_id, item.name)
                return entry
            problem = ""
            for attempt in range(1, ATTEMPTS + 1):
                part = self.cache / f"{item.sha256}.{secrets.token_hex(4)}.part"
                try:
                    got = await self._fetch(item, part, progress)
                    if got.size == item.size and got.sha256 == item.sha256:
                        await asyncio.to_thread(part.replace, entry)
                        self.fetched += 1
                        log.info("container %s: file %s fetched (%d bytes)", tracked.container_id, item.name,
                                 item.size)  # fmt: skip
                        return entry
                    problem = (
                        f"its size or SHA-256 does not match the launch's (expected {item.size} bytes, "
                        f"sha256 {item.sha256[:16]}…; got {got.size}{'+' if got.size > item.size else ''} "
                        f"bytes, sha256 {got.sha256[:16]}…)"
                    )
                except Refused as exc:  # the server said no: asking again would not change it
                    raise LaunchError(f"cannot fetch file {item.name}: {exc}") from None
                except LinkError as exc:
                    problem = f"the server could not be read: {exc}"
                finally:
                    part.unlink(missing_ok=True)  # at once, even when a stop cancels the fetch
                log.warning("container %s: file %s, attempt %d of %d: %s", tracked.container_id, item.name,
                            attempt, ATTEMPTS, problem)  # fmt: skip
            raise LaunchError(f"file {item.name} could not be fetched after {ATTEMPTS} attempts: {problem}")

    async def _fetch(self, item: LaunchFile, part: Path, progress: Callable[[int], None]) -> Fetched:
        return await self.link.download(self.identity(), item.path, part, item.size, progress)

    def prune(self, live: Iterable[Tracked]) -> list[str]:
        """Remove the cache entries no container in ``live`` (those not ended) needs; their SHA-256s.

        In a thread. A file placed in a plan folder is a link of its own: it stays until its
        container's work folder goes.
        """
        needed = {sha for tracked in live if not tracked.terminal for sha in tracked.files}
        removed: list[str] = []
        try:
            entries = list(self.cache.iterdir())
        except OSError:
            return removed
        for entry in entries:
            sha = entry.name[:64]
            if sha in needed:
                continue
            with contextlib.suppress(OSError):
                entry.unlink()
                if not entry.name.endswith(".part"):
                    removed.append(sha)
            lock = self._locks.get(sha)
            if lock is not None and not lock.locked():
                self._locks.pop(sha, None)
        return removed
