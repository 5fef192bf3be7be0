"""Raw results: each container's JTL as its agent uploads it once the container ended, and the
test's merged JTL made from them; a retention setting bounds how long they are kept.

An upload (``PUT /agents/{agent}/containers/{container}/jtl``) is the JTL gzip-compressed as the
agent sent it, with the SHA-256 of those bytes: streamed to a temporary file beside its final one
(``DATA_DIR/results/<test id>/<container id>.jtl.gz``), hashed on the way, never whole in memory,
renamed into place only once complete and checked, then recorded (size, checksum, header line,
when). A repeated upload replaces the earlier one.

With ``--database`` (replicas on one PostgreSQL) the bytes go to the database too (``blobs.py``),
checked, before the record; the file under ``results/`` is each replica's cache of them, read back
from the database when missing or not the record's bytes. Retention and test deletion remove them
from the database; another replica serves only what the records in the database still name.

The merged JTL is the header line once, then each container's rows in container index order,
each container's rows in the order JMeter wrote them (completion order): it is **not** sorted by
time across containers (a sort would need every row at once, or a k-way merge of files that
are each only nearly sorted). Decompressed on the fly, a chunk at a time: constant memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import shutil
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

from octotui.server import blobs
from octotui.server.domain import clock
from octotui.server.domain.lifecycle import TERMINAL, TEST_TERMINAL
from octotui.server.domain.state import ServerState
from octotui.server.errors import Conflict, Gone, Invalid, NoSpace, NotFound, TooLarge
from octotui.server.records import ContainerRec, TestRec
from octotui.server.spool import remove_stale, spool
from octotui.server.tables import JtlRow

log = logging.getLogger("octotui.server")

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
#: Compressed bytes read, and most bytes decompressed, at a time by the merged export.
_READ = 256 * 1024
_OUT = 1024 * 1024
#: The longest header line taken from an upload.
_HEADER_MAX = 64 * 1024
SECONDS_A_DAY = 86400.0


def path_of(s: ServerState, test_id: str, container_id: str) -> Path:
    """Where a container's uploaded JTL is kept."""
    return s.settings.results_dir / test_id / f"{container_id}.jtl.gz"


def _mib(n: int) -> str:
    return f"{n} bytes ({n / 1024**2:.1f} MiB)" if n < 1024**3 else f"{n} bytes ({n / 1024**3:.1f} GiB)"


def too_big(limit: int) -> str:
    """Why an upload over ``limit`` bytes is refused (the gate says it too, from the declared size)."""
    return f"a JTL upload is limited to {_mib(limit)} (gzip-compressed, as sent)"


def target(s: ServerState, agent_id: str, container_id: str) -> ContainerRec:
    """The container an upload is for, once it is ``agent_id``'s and ended (checked before any byte
    of the body is read)."""
    c = s.containers.get(container_id)
    if c is None:
        raise NotFound(f"no container with id {container_id!r}")
    if c.agent_id != agent_id:
        raise Conflict(f"container {container_id} ran on agent {c.agent_id}, not on {agent_id}")
    if c.state not in TERMINAL:
        raise Conflict(f"container {container_id} is {c.state}: its JTL is taken once it ended")
    return c


def checksum(value: str | None) -> str:
    """The ``X-Checksum-Sha256`` value, lower-cased; :class:`Invalid` when absent or malformed."""
    if value is None or not _SHA256.fullmatch(value.strip()):
        raise Invalid("X-Checksum-Sha256 must be the 64 hex digits of the SHA-256 of the body as sent")
    return value.strip().lower()


class _Header:
    """The first line of a gzip stream fed to it piece by piece (decompressing no more than needed)."""

    def __init__(self) -> None:
        self._gunzip = zlib.decompressobj(wbits=31)
        self._text = bytearray()
        self._seen = 0
        self.line: bytes | None = None

    def feed(self, chunk: bytes) -> None:
        if self.line is not None or not chunk:
            return
        if self._seen == 0 and not chunk.startswith(b"\x1f\x8b"[: len(chunk)]):
            raise Invalid("the body is not gzip-compressed (send the JTL gzip-compressed, as it is stored)")
        self._seen += len(chunk)
        try:
            self._text += self._gunzip.decompress(chunk, _HEADER_MAX + 1 - len(self._text))
        except zlib.error as exc:
            raise Invalid(f"the body is not a valid gzip stream: {exc}") from None
        end = self._text.find(b"\n")
        if end >= 0:
            self.line = bytes(self._text[:end]).rstrip(b"\r")
        elif len(self._text) > _HEADER_MAX:
            raise Invalid(f"the JTL's first line is longer than {_HEADER_MAX} bytes: not a CSV JTL")

    def finish(self) -> str:
        """The header line as text (empty for an empty JTL)."""
        line = self.line if self.line is not None else bytes(self._text).rstrip(b"\r\n")
        text = line.decode("utf-8", "replace")
        if text.startswith("<"):
            raise Invalid("an XML JTL: the server takes CSV JTLs (jmeter.save.saveservice.output_format=csv)")
        return text


async def receive(
    s: ServerState, agent_id: str, container_id: str, sent_sum: str | None, declared: int | None,
    body: AsyncIterator[bytes],
) -> JtlRow:  # fmt: skip
    """Take a container's JTL upload: checked, streamed to disk, renamed into place, recorded.

    Refusals (nothing kept, an earlier upload left as it was): unknown container (:class:`NotFound`),
    another agent's or not ended (:class:`Conflict`), no or a malformed checksum, a body that is not
    gzip or whose SHA-256 differs (:class:`Invalid`), over ``max_jtl_bytes`` (:class:`TooLarge`,
    declared or counted), a full disk (:class:`NoSpace`).
    """
    c = target(s, agent_id, container_id)
    want = checksum(sent_sum)
    limit = s.settings.max_jtl_bytes
    if declared is not None and declared > limit:
        raise TooLarge(too_big(limit))
    await remove_stale(s.settings.files_dir, s.settings.results_dir)  # an earlier run's cut uploads
    final = path_of(s, c.test_id, c.id)
    tmp = final.with_name(f".{c.id}.{secrets.token_hex(4)}.part")
    header = _Header()
    store = blobs.of(s.settings.database)
    key = blobs.jtl_key(c.test_id, c.id)
    put = kept = False
    try:
        size, got = await spool(body, tmp, limit, too_big(limit), header.feed)
        if size == 0:
            raise Invalid("empty body: send the JTL gzip-compressed")
        line = header.finish()
        if got != want:
            raise Invalid(f"checksum mismatch: the body received has SHA-256 {got}, X-Checksum-Sha256 says {want}")
        if s.containers.get(c.id) is not c:
            raise NotFound(f"no container with id {container_id!r} (its test was deleted)")
        put = True
        await store.put("jtl", key, tmp)  # before the record: a record never lacks its bytes
        await asyncio.to_thread(os.replace, tmp, final)
        store.mark(final, got)
        row: JtlRow = (c.id, c.test_id, size, got, line, clock.now(), None)
        await s.store.save_jtl(row)
        kept = True
    except OSError as exc:
        if exc.errno == 28:  # ENOSPC
            raise NoSpace(f"the server's disk is full, the JTL was not kept ({exc.strerror})") from None
        raise
    finally:
        with contextlib.suppress(OSError):
            await asyncio.to_thread(tmp.unlink, True)
        if put and not kept:
            with contextlib.suppress(Exception):
                await store.drop("jtl", [key])
    log.info("container %s: JTL stored (%s, sha256 %s…)", c.id, _mib(size), got[:12])
    return row


# --- the merged export ---------------------------------------------------------------------------


@dataclass
class Merged:
    """A test's merged JTL: the chunks to send, and the containers whose JTL is not in it."""

    chunks: Iterator[bytes]
    missing: list[str]
    filename: str


def _gunzip(path: Path) -> Iterator[bytes]:
    """A gzip file's contents (every member), at most ``_OUT`` bytes at a time."""
    with path.open("rb") as f:
        gunzip = zlib.decompressobj(wbits=31)
        data = b""
        while True:
            if gunzip.eof:
                data = gunzip.unused_data
                gunzip = zlib.decompressobj(wbits=31)  # a next member, or the end
            if not data:
                data = f.read(_READ)
                if not data:
                    return
            out = gunzip.decompress(data, _OUT)
            data = gunzip.unconsumed_tail
            if out:
                yield out


def _rows(paths: list[Path]) -> Iterator[bytes]:
    """The header of the first file, then every file's rows without its header, one after another."""
    for i, path in enumerate(paths):
        skipping = i > 0
        last = b"\n"
        for chunk in _gunzip(path):
            if skipping:
                end = chunk.find(b"\n")
                if end < 0:
                    continue
                chunk = chunk[end + 1 :]
                skipping = False
                if not chunk:
                    continue
            last = chunk[-1:]
            yield chunk
        if last != b"\n":
            yield b"\n"  # a file cut short after its last row must not glue it to the next one


async def merged(s: ServerState, test_id: str) -> Merged:
    """A test's merged JTL (see the module's docstring).

    Refused: a test not ended (:class:`Conflict`: the JTLs are uploaded once containers end), none
    uploaded yet (:class:`Conflict`), all removed by retention (:class:`Gone`), containers whose
    JTLs have different columns (:class:`Conflict`, naming them). Containers not uploaded yet are
    left out and named in ``missing``.
    """
    t = s.get_test(test_id)
    if t.state not in TEST_TERMINAL:
        raise Conflict("still running: the merged JTL is made once it ended")
    rows = {row[0]: row for row in await s.store.jtls_of(t.id)}
    store = blobs.of(s.settings.database)
    await store.sweep(s.settings.files_dir, s.settings.results_dir)  # at most once a minute
    present: list[tuple[ContainerRec, JtlRow]] = []
    missing: list[str] = []
    pruned = 0
    for c in sorted(s.containers_of(t), key=lambda c: c.index):
        row = rows.get(c.id)
        path = path_of(s, t.id, c.id)
        # With --database the record is the truth (the bytes are read back when this copy lacks them).
        if row is not None and row[6] is None and (store.shared or await asyncio.to_thread(path.is_file)):
            present.append((c, row))
        else:
            if row is not None and row[6] is not None:
                pruned += 1
                if store.shared:  # pruned through another replica: this copy goes too
                    await asyncio.to_thread(store.forget, path)
            missing.append(c.id)
    if not present:
        if pruned:
            days = s.settings.jtl_retention_days
            raise Gone(f"the JTLs of test {t.id} were deleted {days:g} days after it ended (--jtl-retention)")
        raise Conflict(f"no container of test {t.id} has uploaded its JTL yet (missing: {', '.join(missing)})")
    _same_columns(t, present)
    paths = [
        await store.ensure("jtl", blobs.jtl_key(t.id, c.id), path_of(s, t.id, c.id), row[3])
        for c, row in present
        if row[2] > 0
    ]
    return Merged(_rows(paths), missing, f"{t.id}.jtl")


def _same_columns(t: TestRec, present: list[tuple[ContainerRec, JtlRow]]) -> None:
    headers = {row[4] for _, row in present if row[4]}
    if len(headers) > 1:
        parts = "; ".join(f"container {c.index} ({c.id}): {row[4][:200]!r}" for c, row in present if row[4])
        raise Conflict(f"test {t.id}: the containers' JTLs have different columns, they cannot be merged: {parts}")


# --- retention and removal -----------------------------------------------------------------------


async def prune(s: ServerState) -> int:
    """Delete the JTLs of tests ended more than ``jtl_retention_days`` ago (0: never); how many."""
    days = s.settings.jtl_retention_days
    if days <= 0:
        return 0
    now = clock.now()
    old = await s.store.jtls_ended_before(now - days * SECONDS_A_DAY)
    if not old:
        return 0
    for container_id, test_id in old:
        await asyncio.to_thread(path_of(s, test_id, container_id).unlink, True)
    await s.store.jtls_pruned([cid for cid, _ in old], now)
    tests = sorted({tid for _, tid in old})
    log.info("JTL retention (%g days): %d JTL(s) of ended test(s) %s deleted", days, len(old), ", ".join(tests))
    return len(old)


async def remove_files(s: ServerState, test_id: str) -> None:
    """Delete every JTL kept for a test (its folder, and its bytes in the database with ``--database``)."""
    await blobs.of(s.settings.database).drop_prefix("jtl", blobs.jtl_key(test_id, ""))
    folder = s.settings.results_dir / test_id
    await asyncio.to_thread(shutil.rmtree, folder, True)
