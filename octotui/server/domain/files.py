"""Test files (issue 12, part 4): uploaded once, kept on the server's disk, fetched by each agent
over its own connection, copied whole to every container or split between them.

An upload (``POST /files?name=NAME``, the raw body) is streamed to a temporary file beside its final
one (``DATA_DIR/files/<id>``), hashed (SHA-256) and scanned for lines on the way, never whole in
memory, renamed into place once complete, then recorded. A file is text when it is valid UTF-8
without a NUL byte: ``lines`` counts its lines (a last line without its newline counts too); a
binary file has ``lines`` None and can be copied, not split.

A test names its files in ``TestCreate.files``; they are checked before anything is placed (an
unknown id, two files of one name, a split of a binary file or of fewer data lines than the test has
containers: refused, nothing launched). A split file is divided at launch, in one pass over it in a
worker thread, into one **share** per container index: contiguous line ranges as even as possible
(the first ``lines % containers`` shares get one line more); with ``header`` the first line is not
divided but put first in every share. Each share's byte range and SHA-256 are stored with the test.

Each container's launch lists its files with the API path its agent fetches them from: the agent
may fetch a file only while it runs a live container of a test that brings it, and a share only for
the container index it runs.

**Replicas on one PostgreSQL** (``--database``): the bytes are in the database too (``blobs.py``),
stored before the record; the file under ``files/`` is each replica's cache of them. The record in the
database is the truth: the routes re-read it (:func:`refresh`) before they answer, so a file uploaded
through another replica is known, and one deleted through another is gone (its copy removed here).

**Kept until deleted:** a file belongs to the operator who uploaded it, not to a test: it stays
until ``DELETE /files/{id}`` (refused while a test that has not ended brings it). Deleting a test
drops its links to its files, never a file. A file deleted after the ended tests that used it
leaves them naming an id that no longer exists (their re-run is then refused as an unknown file).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import hashlib
import logging
import os
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from octotui.protocol import FileInfo, FileName, LaunchFile, TestCreate
from octotui.server import blobs
from octotui.server.domain import clock
from octotui.server.domain.lifecycle import TEST_TERMINAL
from octotui.server.domain.state import ServerState, new_id
from octotui.server.domain.views import dt
from octotui.server.errors import Conflict, Forbidden, Invalid, NoSpace, NotFound, TooLarge
from octotui.server.records import FileRec, FileUse, Share, TestRec
from octotui.server.spool import remove_stale, spool

log = logging.getLogger("octotui.server")

#: Bytes read at a time when shares are computed or served.
_READ = 256 * 1024
_NAME: TypeAdapter[str] = TypeAdapter(FileName)


def path_of(s: ServerState, file_id: str) -> Path:
    """Where an uploaded file's bytes are kept."""
    return s.settings.files_dir / file_id


def _size(n: int) -> str:
    return f"{n} bytes ({n / 1024**2:.1f} MiB)" if n < 1024**3 else f"{n} bytes ({n / 1024**3:.1f} GiB)"


def too_big(limit: int) -> str:
    """Why an upload over ``limit`` bytes is refused (the gate says it too, from the declared size)."""
    return f"a file is limited to {_size(limit)} (the server's --max-file-bytes)"


def check_name(name: str) -> str:
    """``name`` when it is a plain file name (:data:`FileName`); :class:`Invalid` saying why not."""
    if "/" in name or "\\" in name:
        raise Invalid(f"a file name is expected, not a path: {name[:100]!r} (it is placed beside the plan)")
    try:
        return _NAME.validate_python(name)
    except ValidationError as exc:
        problem = exc.errors()[0].get("msg", "invalid")
        raise Invalid(f"invalid file name {name[:100]!r}: {problem}") from None


def info(f: FileRec) -> FileInfo:
    """A file as the API lists it."""
    return FileInfo(id=f.id, name=f.name, size=f.size, sha256=f.sha256, created_at=dt(f.created_at), lines=f.lines)


def get(s: ServerState, file_id: str) -> FileRec:
    f = s.files.get(file_id)
    if f is None:
        raise NotFound(f"no file with id {file_id!r}")
    return f


def listed(s: ServerState) -> list[FileInfo]:
    """Every uploaded file, oldest first."""
    return [info(f) for f in sorted(s.files.values(), key=lambda f: (f.created_at, f.id))]


# --- upload --------------------------------------------------------------------------------------


class _Scan:
    """Lines and text-ness of bytes fed in order (UTF-8 without NUL bytes is text)."""

    def __init__(self) -> None:
        self.newlines = 0
        self.last = b""
        self.text = True
        self._utf8 = codecs.getincrementaldecoder("utf-8")()

    def feed(self, data: bytes) -> None:
        if not data:
            return
        self.newlines += data.count(b"\n")
        self.last = data[-1:]
        if self.text:
            if b"\0" in data:
                self.text = False
                return
            try:
                self._utf8.decode(data)
            except UnicodeDecodeError:
                self.text = False

    def lines(self, size: int) -> int | None:
        """Lines of the text (a last one without its newline too); None for binary bytes."""
        if not self.text:
            return None
        try:
            self._utf8.decode(b"", final=True)  # a sequence cut at the end is not UTF-8
        except UnicodeDecodeError:
            return None
        return self.newlines + (1 if size and self.last != b"\n" else 0)


async def receive(s: ServerState, name: str, declared: int | None, body: AsyncIterator[bytes]) -> FileRec:
    """Take an uploaded file: its name checked, streamed to disk (hashed, lines counted), renamed
    into place, recorded. Refused, nothing kept: a name that is not a plain file name
    (:class:`Invalid`), over ``max_file_bytes`` (:class:`TooLarge`, declared or counted), a full disk
    (:class:`NoSpace`)."""
    name = check_name(name)
    limit = s.settings.max_file_bytes
    if declared is not None and declared > limit:
        raise TooLarge(too_big(limit))
    await remove_stale(s.settings.files_dir, s.settings.results_dir)  # an earlier run's cut uploads
    file_id = new_id("f")
    final = path_of(s, file_id)
    tmp = final.with_name(f".{file_id}.{secrets.token_hex(4)}.part")
    scan = _Scan()
    kept = put = False
    store = blobs.of(s.settings.database)
    try:
        size, sha256 = await spool(body, tmp, limit, too_big(limit), scan.feed)
        rec = FileRec(file_id, name, size, sha256, clock.now(), scan.lines(size))
        put = True
        await store.put("file", file_id, tmp)  # before the record: a record never lacks its bytes
        await asyncio.to_thread(os.replace, tmp, final)
        store.mark(final, sha256)
        try:
            await s.store.save_file(rec)
        except BaseException:
            await asyncio.to_thread(final.unlink, True)
            raise
        kept = True
    except OSError as exc:
        if exc.errno == 28:  # ENOSPC
            raise NoSpace(f"the server's disk is full, the file was not kept ({exc.strerror})") from None
        raise
    finally:
        if not kept:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(tmp.unlink, True)
            if put:
                with contextlib.suppress(Exception):
                    await store.drop("file", [file_id])
    s.files[rec.id] = rec
    kind = f"{rec.lines} lines" if rec.lines is not None else "binary"
    log.info("file %s (%s) stored: %s, %s, sha256 %s…", rec.name, rec.id, _size(size), kind, rec.sha256[:12])
    return rec


#: While the database cannot be read, a read of the files from memory says so at most this often (s).
STALE_SAID_EVERY = 60.0
_stale_said: dict[int, float] = {}  # id(state) -> when it was last said


async def refresh(s: ServerState, file_id: str | None = None, *, stale_ok: bool = False) -> None:
    """With ``--database``: take the record of ``file_id`` (or every record) as the database holds it
    now, so that another replica's upload is known here and its deletion forgotten here (with the
    copy on this replica's disk). Nothing on SQLite (this server is the only writer).

    With ``stale_ok`` (a read), a database that cannot be read now (PostgreSQL away) leaves the
    records as this replica last knew them, with a warning (once a minute at most); otherwise its
    error is raised (a delete or a launch must not act on what may be stale)."""
    await remove_stale(s.settings.files_dir, s.settings.results_dir)  # an earlier run's cut uploads
    store = blobs.of(s.settings.database)
    if not store.shared:
        return
    try:
        await _refresh(s, store, file_id)
    except sqlite3.OperationalError as exc:  # pgstore.StoreUnavailable: PostgreSQL cannot be reached now
        if not stale_ok:
            raise
        now = time.monotonic()
        if now - _stale_said.get(id(s), -STALE_SAID_EVERY) >= STALE_SAID_EVERY:
            _stale_said[id(s)] = now
            log.warning("files listed from memory, maybe stale (another replica's uploads and deletes "
                        "unseen) while the store cannot be read: %s", exc)  # fmt: skip


async def _refresh(s: ServerState, store: blobs.Blobs, file_id: str | None) -> None:
    await store.sweep(s.settings.files_dir, s.settings.results_dir)  # at most once a minute
    known = [file_id] if file_id is not None else list(s.files)  # before: one uploaded meanwhile stays
    found = {f.id: f for f in await s.store.files_now(file_id)}
    gone = [i for i in known if i not in found]
    for i in gone:
        s.files.pop(i, None)
        await asyncio.to_thread(store.forget, path_of(s, i))
    s.files.update(found)


async def local_copy(s: ServerState, f: FileRec) -> Path:
    """Where this server reads the bytes of ``f`` (read from the database when its copy is missing
    or not ``f``'s bytes, with ``--database``)."""
    return await blobs.of(s.settings.database).ensure("file", f.id, path_of(s, f.id), f.sha256)


def users(s: ServerState, file_id: str) -> list[TestRec]:
    """The tests that bring a file."""
    return [t for t in s.tests.values() if any(u.file_id == file_id for u in t.files)]


async def delete(s: ServerState, file_id: str) -> FileRec:
    """Delete an uploaded file: refused (:class:`Conflict`, naming them) while tests that have not
    ended bring it (their agents may still fetch it). Launches wait meanwhile (none takes it half-gone)."""
    across = contextlib.nullcontext() if s.replica is None else s.replica.launching()
    async with s.launching, across:  # with replicas: their launches up to now are in memory
        f = get(s, file_id)
        live = [t for t in users(s, file_id) if t.state not in TEST_TERMINAL]
        if live:
            names = ", ".join(f"{t.name!r} ({t.id}, {t.state})" for t in live)
            raise Conflict(f"file {f.name!r} ({f.id}) is brought by test(s) not ended: {names}; stop them first")
        await s.store.delete_file(f.id)  # its bytes in the database with it
        del s.files[f.id]
    await asyncio.to_thread(blobs.of(s.settings.database).forget, path_of(s, f.id))
    log.info("file %s (%s) deleted", f.name, f.id)
    return f


# --- at launch -----------------------------------------------------------------------------------


def check(s: ServerState, spec: TestCreate) -> list[FileRec]:
    """The files a launch names, each checked (see the module's docstring); :class:`Invalid` naming
    the first that cannot be taken."""
    out: list[FileRec] = []
    names: dict[str, str] = {}
    for i, want in enumerate(spec.files):
        f = s.files.get(want.id)
        if f is None:
            raise Invalid(f"files[{i}]: unknown file id {want.id!r} (upload it first: POST /api/v1/files)")
        if f.name in names:
            other = names[f.name]
            raise Invalid(
                f"files[{i}]: two files named {f.name!r} ({other} and {f.id}) in one test: each is placed"
                " beside the plan under its name, so names must differ"
            )
        names[f.name] = f.id
        if want.split:
            if f.lines is None:
                raise Invalid(
                    f"files[{i}]: file {f.name!r} ({f.id}) is binary (not UTF-8 text): copy it, it cannot be split"
                )
            data = f.lines - (1 if want.header else 0)
            if data < spec.containers:
                after = " after its header line" if want.header else ""
                raise Invalid(
                    f"files[{i}]: file {f.name!r} ({f.id}) has {data} data line(s){after} for {spec.containers}"
                    " containers: a split needs at least one line per container"
                )
        out.append(f)
    return out


def line_cuts(lines: int, header: bool, count: int) -> list[int]:
    """Where each share's lines start (line indexes), then the end: contiguous, as even as possible,
    the first ``r`` shares one line longer; with ``header`` line 0 is in none of them."""
    first = 1 if header else 0
    q, r = divmod(lines - first, count)
    cuts = [first]
    for i in range(count):
        cuts.append(cuts[-1] + q + (1 if i < r else 0))
    return cuts


def compute_shares(path: Path, lines: int, header: bool, count: int) -> list[Share]:
    """The shares of a file split between ``count`` containers: one pass over it (blocking: call it
    in a worker thread), each share's byte range and the SHA-256 of exactly its bytes."""
    targets = line_cuts(lines, header, count)[:-1]
    head_digest = hashlib.sha256()
    starts: list[int] = []
    digests: list[hashlib._Hash] = []
    line = pos = 0
    ti = 0
    with path.open("rb") as fh:
        while data := fh.read(_READ):
            view = memoryview(data)
            i = 0
            while i < len(data):
                if ti < len(targets) and line == targets[ti]:
                    starts.append(pos + i)
                    digests.append(head_digest.copy())  # the header first in every share
                    ti += 1
                    continue
                end = len(data)
                if ti < len(targets):
                    need = targets[ti] - line
                    if data.count(b"\n", i) >= need:
                        end = i
                        for _ in range(need):
                            end = data.index(b"\n", end) + 1
                if digests:
                    digests[-1].update(view[i:end])
                elif header:
                    head_digest.update(view[i:end])
                line += data.count(b"\n", i, end)
                i = end
            pos += len(data)
    if len(starts) != count:
        raise Invalid(f"{path.name}: {len(starts)} shares found for {count} containers (the file changed?)")
    head = starts[0] if header else 0
    ends = [*starts[1:], pos]
    return [
        Share(head=head, start=a, end=b, size=head + b - a, sha256=d.hexdigest())
        for a, b, d in zip(starts, ends, digests, strict=True)
    ]


async def uses(s: ServerState, spec: TestCreate, chosen: list[FileRec]) -> list[FileUse]:
    """The files of a new test as it keeps them, with the shares of each split one."""
    out = []
    for want, f in zip(spec.files, chosen, strict=True):
        shares: list[Share] = []
        if want.split:
            assert f.lines is not None  # checked
            path = await local_copy(s, f)
            shares = await asyncio.to_thread(compute_shares, path, f.lines, want.header, spec.containers)
        out.append(FileUse(file_id=f.id, split=want.split, header=want.header, shares=shares))
    return out


def launch_files(s: ServerState, t: TestRec, agent_id: str, index: int) -> list[LaunchFile]:
    """What the launch of container ``index`` on ``agent_id`` brings: each file (copied) or its share."""
    out = []
    for u in t.files:
        f = s.files[u.file_id]
        if u.split:
            share = u.shares[index]
            path = f"/agents/{agent_id}/files/{f.id}/shares/{index}?test={t.id}"
            out.append(LaunchFile(name=f.name, path=path, size=share.size, sha256=share.sha256))
        else:
            out.append(LaunchFile(name=f.name, path=f"/agents/{agent_id}/files/{f.id}", size=f.size, sha256=f.sha256))
    return out


# --- served to agents ----------------------------------------------------------------------------


def served_copy(s: ServerState, agent_id: str, file_id: str) -> FileRec:
    """A file whole, for an agent running a live container of a test that brings it (:class:`Forbidden` else)."""
    f = get(s, file_id)
    live = s.live.get(agent_id, set())
    for t in users(s, file_id):
        if any(cid in live for cid in t.container_ids):
            return f
    raise Forbidden(f"agent {agent_id} runs no live container of a test that brings file {file_id}")


def served_share(s: ServerState, agent_id: str, file_id: str, index: int, test_id: str) -> tuple[FileRec, Share]:
    """Share ``index`` of a file split by test ``test_id``, for the agent running that container
    index, live (:class:`Forbidden` else)."""
    t = s.get_test(test_id)
    use = next((u for u in t.files if u.file_id == file_id and u.split), None)
    if use is None:
        raise NotFound(f"test {test_id} does not split file {file_id!r}")
    if not 0 <= index < len(use.shares):
        raise NotFound(f"test {test_id} splits file {file_id} in {len(use.shares)} shares: no share {index}")
    f = get(s, file_id)
    live = s.live.get(agent_id, set())
    if not any(c.index == index and c.id in live for c in s.containers_of(t) if c.agent_id == agent_id):
        raise Forbidden(f"agent {agent_id} runs no live container {index} of test {test_id}: share {index} is not its")
    return f, use.shares[index]


def share_chunks(path: Path, share: Share) -> Iterator[bytes]:
    """A share's bytes (the header line first), a chunk at a time (blocking: iterated in a thread)."""
    with path.open("rb") as fh:
        for start, left in ((0, share.head), (share.start, share.end - share.start)):
            fh.seek(start)
            while left > 0:
                data = fh.read(min(_READ, left))
                if not data:
                    raise OSError(f"{path} ended {left} bytes early")
                left -= len(data)
                yield data
