"""A replica starting on a database others write: the changes committed between its store's
start-up snapshot and its start as a replica (seconds apart on a loaded machine) are read, not
skipped (it read the others' changes from the newest one at its start on)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from octotui.server import replica
from octotui.server.controller import Controller
from octotui.server.http.factory import create_app
from octotui.server.records import ProviderRec
from octotui.server.replica import reader
from octotui.server.settings import ServerSettings
from octotui.server.store import Store
from tests.support.waiting import wait_until_async


async def test_changes_between_the_snapshot_and_the_replicas_start_are_read(
    tmp_path: Path, pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader, "WINDOW", 0.0)  # the recent-changes window would hide the miss
    writer = Store(tmp_path / "b" / "octotui.db", pg_database)
    await writer.open()
    r = reader.Reader(tmp_path / "r.db", pg_database)
    await r._run(r.ensure_tables)  # the replicas' tables, as a running replica made them
    await r.close()
    writer.origin = "replica-b"
    a = Controller(
        ServerSettings(data_dir=tmp_path / "a", database=pg_database), Store(tmp_path / "a" / "octotui.db", pg_database)
    )
    a.load(await a.store.open())  # a's snapshot: no provider yet
    await writer.save_provider(ProviderRec("p-late", "lab", "0" * 64, time.time()))  # b, meanwhile
    started = await replica.start(a)
    assert started is not None
    try:

        async def known() -> bool:
            return "p-late" in a.providers

        await wait_until_async(known, timeout=10, what="b's provider read by a")
    finally:
        await started.stop()
        await a.store.close()
        await writer.close()


async def test_a_replica_is_not_healthy_before_it_takes_part_in_the_exchange(tmp_path: Path, pg_database: str) -> None:
    """HAProxy's health check (and the clients' failover) must keep a replica out until its writes
    reach the others: before its replica start, a write would not be journalled for them."""
    for database, expected in ((pg_database, 503), (None, 200)):
        app = create_app(ServerSettings(data_dir=tmp_path / str(expected), database=database))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            got = await http.get("/api/v1/health")  # the lifespan not run: no replica started yet
        assert got.status_code == expected, got.text
        if expected == 503:
            assert "replica starting" in got.json()["detail"]
