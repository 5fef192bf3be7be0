"""Label and generator timelines of a running test appended to the store, not rewritten (schema v10):
each save writes only the points that came since the previous one (a chunk per timeline), a
timeline is stored whole again in turns, and what the store holds reads back equal to memory, after
a restart too. On SQLite and PostgreSQL; a database of v9 reads its timelines as before."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from octotui.server.domain import series as series_domain
from octotui.server.schema import MIGRATIONS
from octotui.server.store import Store
from octotui.server.timeline import GeneratorTimeline, LabelTimeline
from octotui.server.timelines import LOG_MAX_POINTS
from tests.support.app import Env
from tests.support.labelkit import serving
from tests.support.wire import fleet, spec

BOTH_STORES = pytest.mark.parametrize("store_kind", ["sqlite", "postgres"], indirect=True)

T0 = 1_700_000_000.0
LABEL_CHUNK = 16  # a chunk's header: two doubles
LABEL_POINT = LabelTimeline.FIELDS * 8
GENERATOR_POINT = GeneratorTimeline.FIELDS * 8
Database = Callable[[Path], str | None]


@contextlib.asynccontextmanager
async def running(data_dir: Path, store_database: Database) -> AsyncIterator[Env]:
    """The real app on ``data_dir``: saves only when told (``series_domain.save``)."""
    async with serving(
        data_dir, database=store_database(data_dir), labels_save_interval=3600.0, late_after=600.0, offline_after=900.0
    ) as env:
        yield env


async def waiting_test(env: Env) -> str:
    """A test whose launch waits for its agent (never sampled by the ticks: its points are the test's)."""
    await fleet(env, "gen-1")
    r = await env.http.post("/tests", json=spec(containers=1))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def add(env: Env, tid: str, labels: list[str], start: int, count: int) -> None:
    """``count`` one-second points of each label and of one generator from ``T0 + start``."""
    tl = env.ctl.timelines
    for s in range(start, start + count):
        ts = T0 + s
        env.ctl.series.add(tid, ts, 10.0, 12.5, 0, 1)
        for k, label in enumerate(labels):
            tl.add_label(tid, label, (ts, 5.0 + k, 0.1 * (s % 3), 40.0 + s % 7, 90.0 + k, 1e4, 1e3, 1.0))
        tl.add_generator(tid, "agent-x", "gen-x", ts, 20.0 + s % 5, 40.0)


async def save(env: Env) -> None:
    await series_domain.save(env.ctl, everything=True)


async def stored(env: Env, tid: str) -> dict[str, tuple[bytes, list[bytes]]]:
    """Each stored timeline of ``tid`` (labels by name, the generator as ``agent:<id>``): its whole
    form and its chunks."""
    out = {row[1]: (row[4], row[5]) for row in await env.ctl.store.label_series_of(tid)}
    for row in await env.ctl.store.generator_series_of(tid):
        out[f"agent:{row[1]}"] = (row[4], row[5])
    return out


@BOTH_STORES
async def test_a_save_appends_only_the_new_points_and_they_read_back_equal_after_a_restart(
    tmp_path: Path, store_database: Database
) -> None:
    labels = ["home", "login", "search"]
    async with running(tmp_path / "d", store_database) as env:
        tid = await waiting_test(env)
        add(env, tid, labels, 0, 40)
        await save(env)
        first = await stored(env, tid)
        assert sorted(first) == ["agent:agent-x", *labels] and all(chunks == [] for _, chunks in first.values())
        add(env, tid, labels, 40, 30)
        await save(env)
        second = await stored(env, tid)
        for name, (whole, chunks) in second.items():  # the whole forms untouched, 30 points appended
            point = GENERATOR_POINT if name.startswith("agent:") else LABEL_POINT
            assert whole == first[name][0] and [len(c) for c in chunks] == [LABEL_CHUNK + 30 * point], name
        add(env, tid, labels[:1], 70, 5)  # only "home" (and the generator) had new points
        await save(env)
        third = await stored(env, tid)
        assert [len(c) for c in third["home"][1]] == [LABEL_CHUNK + 30 * LABEL_POINT, LABEL_CHUNK + 5 * LABEL_POINT]
        assert third["login"] == second["login"] and third["search"] == second["search"]
        await save(env)  # nothing new: nothing written
        assert await stored(env, tid) == third
        query = {"labels": "true", "generators": "true"}
        before = (await env.http.get(f"/tests/{tid}/series", params=query)).json()
        assert [len(x["points"]) for x in before["labels"]] == [75, 70, 70]
    async with running(tmp_path / "d", store_database) as env:
        await save(env)  # takes the stored timelines back (whole and chunks)
        assert (await env.http.get(f"/tests/{tid}/series", params=query)).json() == before
        add(env, tid, labels, 75, 1)
        await save(env)  # stored whole once after a restart (what this server logs starts there)
        assert all(chunks == [] for _, chunks in (await stored(env, tid)).values())


@BOTH_STORES
async def test_a_log_is_stored_whole_again_in_turns_never_past_its_bound(
    tmp_path: Path, store_database: Database
) -> None:
    labels = [f"T{k}" for k in range(8)]
    async with running(tmp_path / "d", store_database) as env:
        tid = await waiting_test(env)
        add(env, tid, labels, 0, 40)
        await save(env)
        was = await stored(env, tid)
        most_whole = 0
        came_whole: set[str] = set()
        for step in range(40):  # 1,200 points each, 30 a save
            add(env, tid, labels, 40 + 30 * step, 30)
            await save(env)
            now = await stored(env, tid)
            whole = {name for name in now if now[name][0] != was[name][0]}
            assert all(now[name][1] == [] for name in whole)
            for name, (_, chunks) in now.items():
                point = GENERATOR_POINT if name.startswith("agent:") else LABEL_POINT
                assert sum(len(c) - LABEL_CHUNK for c in chunks) // point <= LOG_MAX_POINTS, name
            most_whole = max(most_whole, len(whole))
            came_whole |= whole
            was = now
        # Every timeline came whole again at some save, never all at one.
        assert came_whole == set(was) and 0 < most_whole < len(was) // 2
        mem = env.ctl.timelines
        for name, (whole_form, chunks) in was.items():
            if name.startswith("agent:"):
                ((_, _, _, width, _, _),) = await env.ctl.store.generator_series_of(tid)
                g = series_domain._generator_line(width, whole_form, chunks)
                got, want = g.points(), mem.generators[tid][name.removeprefix("agent:")].points()
            else:
                width, coarse = next((r[2], r[3]) for r in await env.ctl.store.label_series_of(tid, name))
                got = series_domain._label_line(width, coarse, whole_form, chunks).points()
                want = mem.labels[tid][name].points()
            assert got == want and len(want) <= LOG_MAX_POINTS, name


@BOTH_STORES
async def test_a_refused_save_keeps_its_points_and_those_that_came_meanwhile(
    tmp_path: Path, store_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(tmp_path / "d", store_database) as env:
        tid = await waiting_test(env)
        add(env, tid, ["home"], 0, 20)
        await save(env)
        add(env, tid, ["home"], 20, 10)
        real = env.ctl.store.save_result_series

        async def refused(*args: Any, **kwargs: Any) -> None:
            add(env, tid, ["home"], 30, 3)  # points taken while the write is under way
            raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr(env.ctl.store, "save_result_series", refused)
        with pytest.raises(sqlite3.OperationalError):
            await save(env)
        monkeypatch.setattr(env.ctl.store, "save_result_series", real)
        await save(env)
        whole, chunks = (await stored(env, tid))["home"]
        assert [len(c) for c in chunks] == [LABEL_CHUNK + 13 * LABEL_POINT]
        (row,) = await env.ctl.store.label_series_of(tid, "home")
        got = series_domain._label_line(row[2], row[3], whole, chunks)
        assert got.points() == env.ctl.timelines.labels[tid]["home"].points() and len(got) == 33


@BOTH_STORES
async def test_deleting_timelines_deletes_their_chunks_and_one_label_reads_alone(
    tmp_path: Path, store_database: Database
) -> None:
    store = Store(tmp_path / "octotui.db", store_database(tmp_path))
    await store.open()
    try:
        line = LabelTimeline()
        line.add_raw((T0, 1.0, 0.0, 5.0, 9.0, 1.0, 1.0, 1.0))
        head = LabelTimeline.pack_points(line.data)
        rows = [(tid, label, *line.pack()) for tid in ("t-1", "t-2") for label in ("a", "b")]
        gens = [(tid, "agent-x", "gen-x", 60.0, b"\0" * 8) for tid in ("t-1", "t-2")]
        chunks = [(tid, label, seq, head) for tid in ("t-1", "t-2") for label in ("a", "b") for seq in (0, 1)]
        await store.save_result_series(rows, gens, chunks, [("t-1", "agent-x", 0, head), ("t-2", "agent-x", 0, head)])
        (one,) = await store.label_series_of("t-1", "b")
        assert one[1] == "b" and one[5] == [head, head]
        await store.delete_result_series(["t-1"])
        assert await store.label_series_of("t-1") == [] and await store.generator_series_of("t-1") == []
        assert [(r[1], len(r[5])) for r in await store.label_series_of("t-2")] == [("a", 2), ("b", 2)]
        # Stored whole again: its chunks go.
        await store.save_result_series(rows[2:3], [])
        assert [(r[1], len(r[5])) for r in await store.label_series_of("t-2")] == [("a", 0), ("b", 2)]
        assert [len(r[5]) for r in await store.generator_series_of("t-2")] == [1]
    finally:
        await store.close()


async def test_a_database_of_v9_reads_its_timelines_after_the_migration(tmp_path: Path) -> None:
    path = tmp_path / "octotui.db"
    line = LabelTimeline()
    for s in range(50):
        line.add_raw((T0 + s, 1.0, 0.0, 5.0 + s, 9.0, 1.0, 1.0, 1.0))
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        for migration in MIGRATIONS[:9]:
            migration(db)
        db.execute("PRAGMA user_version = 9")
        db.execute("INSERT INTO label_series VALUES (?, ?, ?, ?, ?)", ("t-1", "home", *line.pack()))
    store = Store(path)
    await store.open()
    try:
        ((_, label, width, coarse, packed, chunks),) = await store.label_series_of("t-1")
        assert (label, chunks) == ("home", [])
        assert series_domain._label_line(width, coarse, packed, chunks).points() == line.points()
    finally:
        await store.close()
