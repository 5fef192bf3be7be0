"""Embedded mode: the dashboard starts its own server and local agent as children, and stops them."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import psutil
import pytest

from octotui.client import Client
from octotui.embedded import Embedded, EmbeddedError, local_agent_name
from octotui.tui.app import DashboardSettings, create_app
from octotui.tui.widgets.tables import AgentsTable, ProvidersTable


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_embedded_starts_server_and_agent_and_stops_them(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    embedded = Embedded(data_dir)
    try:
        await asyncio.to_thread(embedded.start)
        assert embedded.url.startswith("http://127.0.0.1:")
        assert (data_dir / "admin.token").read_text().strip() == embedded.admin_token
        assert (data_dir / "admin.token").stat().st_mode & 0o777 == 0o600
        pids = embedded.pids
        assert len(pids) == 2 and not any(gone(p) for p in pids)
        argv = " ".join(" ".join(psutil.Process(pid).cmdline()) for pid in pids)
        assert embedded.admin_token not in argv, "no secret on a command line, where `ps` shows it"
        assert embedded.provider_token.startswith("octo_") and embedded.provider_token not in argv
        assert not any(embedded.provider_token in f.read_text(errors="replace") for f in data_dir.glob("*.*")
                       if f.is_file() and not f.name.endswith(".log")), "kept nowhere on disk"  # fmt: skip
        async with Client(embedded.url, embedded.admin_token) as admin:
            assert [p.token for p in await admin.providers()] == [""], "the server keeps it hashed"
        app = create_app(DashboardSettings(refresh=0.5), Client(embedded.url, embedded.admin_token))
        async with app.run_test(size=(80, 24)) as pilot:
            table = app.screen.query_one(AgentsTable)
            name = local_agent_name()

            def local_online() -> bool:
                # Registration alone makes an agent online; its figures come with its first
                # heartbeat a moment later (after the agent has asked its Docker engine), so wait
                # for the row to show both, as a user looking at the first screen does.
                return any(
                    (c := table.row_cells(k)) is not None
                    and c[1].text == name
                    and c[0].text == "online"
                    and c[5].sort is not None
                    for k in table.row_keys
                )

            deadline = time.monotonic() + 30
            while not local_online():
                assert time.monotonic() < deadline, (data_dir / "agent.log").read_text()[-2000:]
                await pilot.pause(0.1)
            agent = next(a for a in app.agents if a.name == name)
            assert agent.provider_name == "local" and agent.location == "local"
            assert agent.host is not None and agent.host.memory_percent > 0
            providers = app.screen.query_one(ProvidersTable)
            assert [providers.row_cells(k)[0].text for k in providers.row_keys] == ["local"]  # type: ignore[index]
            await pilot.press("q")
        assert not app.is_running
    finally:
        await asyncio.to_thread(embedded.stop)
    assert all(gone(p) for p in pids), "children still alive after the dashboard quit"


async def test_embedded_restart_reuses_provider_and_agent(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = Embedded(data_dir)
    await asyncio.to_thread(first.start)
    made = first.provider_token
    try:  # rotated by some client: the next start must not depend on the token it made
        async with Client(first.url, first.admin_token) as client:
            rotated = (await client.rotate_provider_token(first.provider_id)).token
    finally:
        await asyncio.to_thread(first.stop)
    stopped = time.time()

    async def same_agent_beats_again(embedded: Embedded) -> None:
        async with Client(embedded.url, embedded.admin_token) as client:
            assert [p.name for p in await client.providers()] == ["local"]
            deadline = time.monotonic() + 30
            # a stored agent is listed online at once: wait for a heartbeat of the restarted one
            while (
                not (agents := await client.agents())
                or not agents[0].last_seen
                or (agents[0].last_seen.timestamp() < stopped)
            ):
                assert time.monotonic() < deadline, (data_dir / "agent.log").read_text()[-2000:]
                await asyncio.sleep(0.2)
            assert len(agents) == 1 and agents[0].status == "online"

    second = Embedded(data_dir)
    try:
        await asyncio.to_thread(second.start)
        assert second.admin_token == first.admin_token
        assert second.provider_token not in ("", made, rotated), "a new token at every start"
        assert second.provider_id == first.provider_id
        await same_agent_beats_again(second)  # registered again (new port) with it: same identity
    finally:
        await asyncio.to_thread(second.stop)
    assert all(gone(p) for p in first.pids + second.pids)


def test_embedded_reports_a_server_that_dies_at_start(tmp_path: Path) -> None:
    embedded = Embedded(tmp_path / "data", python="/bin/false")
    with pytest.raises(EmbeddedError, match="the embedded server exited; its log"):
        embedded.start()
    embedded.stop()
    assert all(gone(p) for p in embedded.pids)
    assert not (tmp_path / "data" / "server.url").exists()


def test_embedded_data_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(EmbeddedError, match=r"cannot use .* as the data directory"):
        Embedded(not_a_dir / "data").start()


def test_local_agent_name_is_a_valid_name() -> None:
    from octotui.protocol import RegisterRequest

    RegisterRequest(name=local_agent_name(), location="local")
