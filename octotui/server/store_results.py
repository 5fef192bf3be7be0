"""The store's rows of results: per-label figures, timelines, uploaded JTLs and files."""

from __future__ import annotations

import sqlite3

from octotui.server import tables
from octotui.server.errors import Unstorable
from octotui.server.records import FileRec
from octotui.server.storebase import Connection

_UPSERT_LABELS = tables.upsert_labels()
_SELECT_LABELS = tables.select("container_labels", tables.LABEL_COLUMNS)
_UPSERT_SERIES = tables.upsert("test_series", tables.SERIES_COLUMNS)
_SELECT_SERIES = tables.select("test_series", tables.SERIES_COLUMNS)
#: Each label's timeline and each generator's of a test (migration v7), as stored whole.
LABEL_SERIES_COLUMNS = ("test_id", "label", "width", "coarse", "points")
LabelSeriesRow = tuple[str, str, float, int, bytes]
#: (No ``coarse`` column: a generator's ``points`` start with that count, one double.)
GENERATOR_SERIES_COLUMNS = ("test_id", "agent_id", "agent_name", "width", "points")
GeneratorSeriesRow = tuple[str, str, str, float, bytes]
_UPSERT_LABEL_SERIES = (
    tables.insert("label_series", LABEL_SERIES_COLUMNS) + " ON CONFLICT(test_id, label)"
    " DO UPDATE SET width = excluded.width, coarse = excluded.coarse, points = excluded.points"
)
_UPSERT_GENERATOR_SERIES = (
    tables.insert("generator_series", GENERATOR_SERIES_COLUMNS) + " ON CONFLICT(test_id, agent_id)"
    " DO UPDATE SET agent_name = excluded.agent_name, width = excluded.width, points = excluded.points"
)
#: The points appended to a stored label's or generator's timeline since it was stored whole, one
#: chunk a save, in ``seq`` order (migration v10): reading one replays them after the whole form;
#: storing it whole again deletes them.
LABEL_CHUNK_COLUMNS = ("test_id", "label", "seq", "points")
GENERATOR_CHUNK_COLUMNS = ("test_id", "agent_id", "seq", "points")
ChunkRow = tuple[str, str, int, bytes]
#: A stored timeline and its chunks' points, in order.
StoredLabelSeries = tuple[str, str, float, int, bytes, list[bytes]]
StoredGeneratorSeries = tuple[str, str, str, float, bytes, list[bytes]]
_INSERT_LABEL_CHUNK = tables.insert("label_series_chunks", LABEL_CHUNK_COLUMNS)
_INSERT_GENERATOR_CHUNK = tables.insert("generator_series_chunks", GENERATOR_CHUNK_COLUMNS)
_UPSERT_JTL = tables.upsert("container_jtl", tables.JTL_COLUMNS)
_SELECT_JTL = tables.select("container_jtl", tables.JTL_COLUMNS)


class ResultRows(Connection):
    """What a test's results keep in the store (the :class:`~octotui.server.store.Store` is one)."""

    def _series_of(self, test_id: str) -> tables.SeriesRow | None:
        row = self.db.execute(_SELECT_SERIES + " WHERE test_id = ?", (test_id,)).fetchone()
        return None if row is None else tuple(row)

    def _labels_of(self, test_id: str) -> list[tables.LabelRow]:
        return [tuple(row) for row in self.db.execute(_SELECT_LABELS + " WHERE test_id = ?", (test_id,))]

    # --- per-label figures ---------------------------------------------------------------------

    async def save_labels(self, rows: list[tables.LabelRow]) -> None:
        """Write changed labels of containers (one row per container and label) in one transaction."""

        def run(db: sqlite3.Connection) -> None:
            db.executemany(_UPSERT_LABELS, rows)

        await self._run(self._tx, run)

    async def labels_of(self, test_id: str) -> list[tables.LabelRow]:
        """The stored labels of a test's containers."""
        return await self._run(self._labels_of, test_id)

    # --- timelines -----------------------------------------------------------------------------

    async def save_series(self, rows: list[tables.SeriesRow]) -> None:
        """Write tests' timelines (one row per test, replaced whole) in one transaction."""

        def run(db: sqlite3.Connection) -> None:
            db.executemany(_UPSERT_SERIES, rows)

        await self._run(self._tx, run)

    async def series_of(self, test_id: str) -> tables.SeriesRow | None:
        """The stored timeline of a test, None when it has none."""
        return await self._run(self._series_of, test_id)

    async def save_result_series(
        self,
        labels: list[LabelSeriesRow],
        generators: list[GeneratorSeriesRow],
        label_chunks: list[ChunkRow] | None = None,
        generator_chunks: list[ChunkRow] | None = None,
    ) -> None:
        """Write tests' per-label and per-generator timelines in one transaction: those stored whole
        (one row each, replaced; their chunks deleted) and the points appended to others (a chunk each)."""

        def run(db: sqlite3.Connection) -> None:
            db.executemany("DELETE FROM label_series_chunks WHERE test_id = ? AND label = ?", [r[:2] for r in labels])
            db.executemany(_UPSERT_LABEL_SERIES, labels)
            db.executemany(_INSERT_LABEL_CHUNK, label_chunks or [])
            db.executemany(
                "DELETE FROM generator_series_chunks WHERE test_id = ? AND agent_id = ?", [r[:2] for r in generators]
            )
            db.executemany(_UPSERT_GENERATOR_SERIES, generators)
            db.executemany(_INSERT_GENERATOR_CHUNK, generator_chunks or [])

        await self._run(self._tx, run)

    async def delete_result_series(self, test_ids: list[str]) -> None:
        """Forget the label and generator timelines of tests deleted."""

        def run(db: sqlite3.Connection) -> None:
            for table in ("label_series", "generator_series", "label_series_chunks", "generator_series_chunks"):
                db.executemany(f"DELETE FROM {table} WHERE test_id = ?", [(i,) for i in test_ids])

        await self._run(self._tx, run)

    def _chunks(self, table: str, key: str, test_id: str, one: str | None) -> dict[str, list[bytes]]:
        sql = f"SELECT {key}, points FROM {table} WHERE test_id = ?"
        args: tuple[str, ...] = (test_id,)
        if one is not None:
            sql, args = sql + f" AND {key} = ?", (test_id, one)
        out: dict[str, list[bytes]] = {}
        for name, points in self.db.execute(sql + f" ORDER BY {key}, seq", args):
            out.setdefault(name, []).append(bytes(points))
        return out

    async def label_series_of(self, test_id: str, label: str | None = None) -> list[StoredLabelSeries]:
        """The stored label timelines of a test (one label's with ``label``), by label, each with the
        points appended since it was stored whole."""

        def run() -> list[StoredLabelSeries]:
            sql = tables.select("label_series", LABEL_SERIES_COLUMNS) + " WHERE test_id = ?"
            args: tuple[str, ...] = (test_id,)
            if label is not None:
                sql, args = sql + " AND label = ?", (test_id, label)
            rows = self.db.execute(sql + " ORDER BY label", args).fetchall()
            chunks = self._chunks("label_series_chunks", "label", test_id, label) if rows else {}
            return [(r[0], r[1], r[2], r[3], r[4], chunks.get(r[1], [])) for r in rows]

        return await self._run(run)

    async def generator_series_of(self, test_id: str) -> list[StoredGeneratorSeries]:
        """The stored generator timelines of a test, by agent name, each with the points appended
        since it was stored whole."""

        def run() -> list[StoredGeneratorSeries]:
            sql = tables.select("generator_series", GENERATOR_SERIES_COLUMNS) + " WHERE test_id = ?"
            rows = self.db.execute(sql + " ORDER BY agent_name, agent_id", (test_id,)).fetchall()
            chunks = self._chunks("generator_series_chunks", "agent_id", test_id, None) if rows else {}
            return [(r[0], r[1], r[2], r[3], r[4], chunks.get(r[1], [])) for r in rows]

        return await self._run(run)

    # --- uploaded JTLs -------------------------------------------------------------------------

    async def save_jtl(self, row: tables.JtlRow) -> None:
        """Record a container's uploaded JTL (replacing an earlier upload's row)."""

        def run(db: sqlite3.Connection) -> None:
            db.execute(_UPSERT_JTL, row)

        await self._run(self._tx, run)

    async def jtls_of(self, test_id: str) -> list[tables.JtlRow]:
        """The uploaded JTLs of a test's containers."""

        def run() -> list[tables.JtlRow]:
            return [tuple(r) for r in self.db.execute(_SELECT_JTL + " WHERE test_id = ?", (test_id,))]

        return await self._run(run)

    async def jtls_ended_before(self, before: float) -> list[tuple[str, str]]:
        """(container id, test id) of the JTLs still kept whose test ended before ``before``."""

        def run() -> list[tuple[str, str]]:
            rows = self.db.execute(
                "SELECT j.container_id, j.test_id FROM container_jtl j JOIN tests t ON t.id = j.test_id"
                " WHERE j.pruned_at IS NULL AND t.ended_at IS NOT NULL AND t.ended_at < ?",
                (before,),
            )
            return [(r[0], r[1]) for r in rows]

        return await self._run(run)

    async def jtls_pruned(self, container_ids: list[str], ts: float) -> None:
        """Mark JTLs removed by retention (their rows stay: an export then says why; their bytes go)."""

        def run(db: sqlite3.Connection) -> None:
            rows = [(ts, i) for i in container_ids]
            # Their bytes with them, in the same transaction (with --database; none on SQLite: blobs.py).
            db.executemany(
                "DELETE FROM blobs WHERE kind = 'jtl' AND key IN"
                " (SELECT test_id || '/' || container_id FROM container_jtl WHERE container_id = ?)",
                [(i,) for i in container_ids],
            )
            db.executemany("UPDATE container_jtl SET pruned_at = ? WHERE container_id = ?", rows)

        await self._run(self._tx, run)

    # --- uploaded files ------------------------------------------------------------------------

    async def save_file(self, f: FileRec) -> None:
        """Record an uploaded file (its bytes are in place already)."""
        row = tables.file_row(f)

        def run(db: sqlite3.Connection) -> None:
            db.execute(tables.insert("files", tables.FILE_COLUMNS), row)
            self.note("file", f.id)

        try:
            await self._run(self._tx, run)
        except (ValueError, sqlite3.InterfaceError) as exc:
            raise Unstorable(f"the file cannot be stored, nothing was kept: {tables.why(exc)}") from None

    async def delete_file(self, file_id: str) -> None:
        """Forget an uploaded file (the tests that used it keep naming it)."""

        def run(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM files WHERE id = ?", (file_id,))
            # Its bytes with it, in the same transaction (with --database; none on SQLite: blobs.py).
            db.execute("DELETE FROM blobs WHERE kind = 'file' AND key = ?", (file_id,))
            self.note("file", file_id)

        await self._run(self._tx, run)

    async def files_now(self, file_id: str | None = None) -> list[FileRec]:
        """The uploaded files as the database holds them now (one, or all, oldest first): with
        replicas on one PostgreSQL, what another replica uploaded or deleted."""

        def run() -> list[FileRec]:
            sql = tables.select("files", tables.FILE_COLUMNS)
            if file_id is not None:
                return [tables.file_from_row(r) for r in self.db.execute(sql + " WHERE id = ?", (file_id,))]
            return [tables.file_from_row(r) for r in self.db.execute(sql + " ORDER BY created_at, id")]

        return await self._run(run)
