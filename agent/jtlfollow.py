"""Follow one container's CSV JTL as JMeter writes it, into a :class:`~agent.labels.LabelTable`.

Each :meth:`JtlFollower.read` takes only the bytes written since the previous one. Only whole
records are parsed: a record ends at a line feed outside quotes (JMeter quotes a field holding a
comma, a quote or a line break, doubling its quotes, so an even count of quotes before a line feed
means it ends a record); the rest waits for the next read. The first record is the header, and
columns are found by name (their set and order differ between JMeter versions and settings). A file
that does not exist yet is not an error; once the container has ended, ``read(final=True)`` takes
what is left, a last line without its line feed included.

Reads run in a thread (:func:`asyncio.to_thread`); the table is updated under :attr:`JtlFollower.lock`
in batches, so the event loop taking a heartbeat's figures never waits long.
"""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from agent.labels import LabelTable, Pending

#: Columns a JTL must have for its rows to be counted.
REQUIRED = ("timeStamp", "elapsed", "label", "success")
#: Bytes read at most per chunk (a JTL that grew a lot since the last read is taken in several).
CHUNK = 4 * 1024 * 1024
#: Rows aggregated per hold of the lock.
BATCH = 2000
#: An unterminated record longer than this (an unbalanced quote) is parsed as it is rather than
#: kept waiting for ever: memory stays bounded whatever the file holds.
MAX_PENDING = 4 * 1024 * 1024


def record_end(buffer: bytes) -> int:
    """The index just past the last line feed of ``buffer`` that ends a CSV record (0: none)."""
    end = buffer.rfind(b"\n")
    while end >= 0:
        if buffer.count(b'"', 0, end) % 2 == 0:
            return end + 1
        end = buffer.rfind(b"\n", 0, end)
    return 0


class JtlFollower:
    """The figures of one JTL file, read incrementally; :attr:`table` is None until its header is read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        #: Held while the table changes or is read.
        self.lock = threading.Lock()
        self.table: LabelTable | None = None
        self.rows = 0
        self.bad_rows = 0
        self.unusable: str | None = None  # why the file's rows cannot be counted (no such header)
        self._reading = threading.Lock()
        self._handle: BinaryIO | None = None
        self._rest = b""
        self._columns: tuple[int, ...] | None = None
        self._optional: tuple[int | None, ...] = ()
        self._closed = False

    @classmethod
    def restored(cls, path: Path, table: LabelTable) -> JtlFollower:
        """A follower of an ended container's JTL that reads nothing more: its figures are ``table``."""
        follower = cls(path)
        follower.table = table
        follower._closed = True
        return follower

    # --- reading -----------------------------------------------------------------------------

    def read(self, final: bool = False) -> int:
        """Count the rows written since the last read; the number counted. ``final``: JMeter has
        ended, take the last line too and close the file."""
        with self._reading:
            if self._closed:
                return 0
            if self._handle is None:
                try:
                    self._handle = self.path.open("rb")
                except OSError:  # not written yet (JMeter creates it with its first sample)
                    if final:
                        self._closed = True
                    return 0
            counted = 0
            while True:
                data = self._handle.read(CHUNK)
                last = len(data) < CHUNK
                counted += self._consume(data, final and last)
                if last:
                    break
            if final:
                self._handle.close()
                self._handle, self._closed = None, True
            return counted

    def close(self) -> None:
        """Stop following (the file is closed; figures stay readable)."""
        with self._reading:
            if self._handle is not None:
                self._handle.close()
            self._handle, self._closed = None, True

    def _consume(self, data: bytes, final: bool) -> int:
        buffer = self._rest + data if self._rest else data
        end = len(buffer) if final or len(buffer) > MAX_PENDING else record_end(buffer)
        if end == 0:
            self._rest = buffer
            return 0
        complete, self._rest = buffer[:end], buffer[end:]
        reader = csv.reader(io.StringIO(complete.decode("utf-8", errors="replace"), newline=""))
        if self._columns is None and not self._header(reader):
            return 0
        if self.unusable:
            return 0
        counted = 0
        while True:
            with self.lock:
                done, taken = self._aggregate(reader)
            counted += taken
            if done:
                return counted

    def _header(self, reader: Iterator[list[str]]) -> bool:
        """Map the columns from the first record; False when there was none yet."""
        try:
            header = next(reader, None)
        except csv.Error:
            header = []
        if header is None:
            return False
        columns = {name.strip(): index for index, name in enumerate(header)}
        missing = [name for name in REQUIRED if name not in columns]
        if missing:
            self.unusable = f"not a CSV JTL with a header (no {', '.join(missing)} column)"
            self._columns = ()
            return True
        self._columns = tuple(columns[name] for name in REQUIRED)
        self._optional = tuple(
            columns.get(name) for name in ("bytes", "sentBytes", "responseCode", "responseMessage", "failureMessage")
        )
        with self.lock:
            self.table = LabelTable()
        return True

    def _aggregate(self, reader: Iterator[list[str]]) -> tuple[bool, int]:
        """Count up to :data:`BATCH` rows into the table (the caller holds the lock); (at end, rows counted)."""
        table = self.table
        assert table is not None and self._columns
        add = table.add
        i_ts, i_el, i_label, i_ok = self._columns
        i_recv, i_sent, i_code, i_msg, i_fail = self._optional
        width = max(i for i in (*self._columns, *self._optional) if i is not None)
        counted = bad = seen = 0
        rows = reader
        while seen < BATCH:
            try:
                row = next(rows)
            except StopIteration:
                self.rows += counted
                self.bad_rows += bad
                return True, counted
            except csv.Error:  # e.g. a field over csv's size limit
                bad += 1
                continue
            seen += 1
            if len(row) <= width:
                bad += 1
                continue
            try:
                timestamp, elapsed = int(row[i_ts]), int(row[i_el])
                received = int(row[i_recv]) if i_recv is not None else 0
                sent = int(row[i_sent]) if i_sent is not None else 0
            except ValueError:
                bad += 1
                continue
            ok = row[i_ok]
            if ok == "true":
                add(row[i_label], timestamp, elapsed, True, received, sent)
            elif ok == "false" or ok.strip().lower() == "false":
                add(row[i_label], timestamp, elapsed, False, received, sent,
                    row[i_code] if i_code is not None else "",
                    row[i_msg] if i_msg is not None else "",
                    row[i_fail] if i_fail is not None else "")  # fmt: skip
            elif ok.strip().lower() == "true":
                add(row[i_label], timestamp, elapsed, True, received, sent)
            else:
                bad += 1
                continue
            counted += 1
        self.rows += counted
        self.bad_rows += bad
        return False, counted

    # --- what the heartbeat carries ----------------------------------------------------------

    def pending(self) -> Pending | None:
        """The labels changed since the last acknowledged heartbeat (None: no JTL yet)."""
        with self.lock:
            return None if self.table is None else self.table.pending()

    @property
    def label_count(self) -> int:
        """How many labels the JTL has shown so far (a new one is worth a heartbeat at once)."""
        table = self.table
        return 0 if table is None else len(table.labels)

    def everything(self) -> Pending | None:
        """Every label (None: no JTL yet)."""
        with self.lock:
            return None if self.table is None else self.table.everything()

    def resend(self) -> None:
        """The server wants every label again: the next reports carry them all (bounded per report)."""
        with self.lock:
            if self.table is not None:
                self.table.resend()

    def acknowledge(self, mark: int) -> None:
        """The heartbeat built at ``mark`` was answered by the server."""
        with self.lock:
            if self.table is not None:
                self.table.acknowledge(mark)
