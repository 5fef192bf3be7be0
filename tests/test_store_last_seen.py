"""Agents' last heartbeat times, written in bulk now and then (never per heartbeat): batches of
:data:`LAST_SEEN_BATCH` agents in one statement each, on both stores, read back exact."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from octotui.server.records import AgentRec
from octotui.server.store import LAST_SEEN_BATCH, Store


@pytest.mark.parametrize("store_kind", ["sqlite", "postgres"], indirect=True)
async def test_last_seen_times_of_more_agents_than_a_batch_are_written_exact(
    tmp_path: Path, store_database: Callable[[Path], str | None]
) -> None:
    store = Store(tmp_path / "octotui.db", store_database(tmp_path))
    await store.open()
    n = LAST_SEEN_BATCH + 7
    try:
        for i in range(n):
            await store.save_agent(AgentRec(f"a-{i}", "p-1", f"gen{i}", "lab", "1.0", 1.0, 2, 1 << 30, "linux", "h"))
        times: list[tuple[float | None, str]] = [(1_700_000_000.123456 + i, f"a-{i}") for i in range(n)]
        times[3] = (None, "a-3")  # never heard from since its restart
        times.append((5.0, "a-unknown"))  # deleted meanwhile: nothing to update, nothing made
        await store.save_last_seen(times)
    finally:
        await store.close()
    store = Store(tmp_path / "octotui.db", store_database(tmp_path))
    snap = await store.open()
    await store.close()
    got = {a.id: a.last_seen for a in snap.agents}
    assert got == {agent_id: seen for seen, agent_id in times if agent_id != "a-unknown"}
