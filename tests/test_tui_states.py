"""States the dashboard must name plainly (second new-user trial): an embedded child that exited, a
refused token, figures that are old or final, keys that cannot act here."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from pathlib import Path

import psutil
from conftest import ServerProcess
from test_tui import SIZE, build_app, until

from octotui.client import Client
from octotui.embedded import Embedded, local_agent_name
from octotui.tui.app import DashboardSettings, OctoApp, create_app
from octotui.tui.widgets.status_bar import StatusBar


def notes(app: OctoApp) -> list[str]:
    return [f"{n.title}: {n.message}" for n in app._notifications]


def status_text(app: OctoApp) -> str:
    return app.screen.query_one(StatusBar).state_text()[0]


# --- 1. an embedded child that exits -----------------------------------------------------------


async def test_embedded_server_killed_is_named_and_started_again_elsewhere(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    embedded = Embedded(data_dir)
    await asyncio.to_thread(embedded.start)
    blocker = socket.socket()
    try:
        app = create_app(DashboardSettings(refresh=0.5), Client(embedded.url, embedded.admin_token), embedded=True)
        app.supervise(embedded, embedded.admin_token)
        async with app.run_test(size=SIZE) as pilot:
            name = local_agent_name()

            def local_beats() -> bool:
                return any(a.name == name and a.host is not None for a in app.agents)

            await until(pilot, local_beats, what="the local agent's figures")
            assert embedded.server is not None
            old_url, old_pid = embedded.url, embedded.server.pid
            os.kill(old_pid, signal.SIGKILL)
            # Its port taken meanwhile (no await in between: the app cannot restart it first), so
            # the server comes back elsewhere and the dashboard must follow it there. A zombie has
            # closed its sockets; reaping it is the app's job.
            deadline = time.monotonic() + 10
            while psutil.Process(old_pid).status() != psutil.STATUS_ZOMBIE:
                assert time.monotonic() < deadline, "the killed server never exited"
            port = int(old_url.rsplit(":", 1)[1])
            blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            blocker.bind(("127.0.0.1", port))
            blocker.listen()
            await until(pilot, lambda: any("Embedded server exited" in n for n in notes(app)), what="exit notice")
            notice = next(n for n in notes(app) if "Embedded server exited" in n)
            assert "killed by signal 9" in notice and str(data_dir / "server.log") in notice
            assert "last line:" in notice
            await until(pilot, lambda: any("started again" in n for n in notes(app)), what="restart notice")
            assert embedded.url != old_url and embedded.server.pid != old_pid
            assert app.client.base_url == embedded.url
            assert embedded.url in str(app.screen.query_one(StatusBar).query_one("#sb-server").render())
            await until(pilot, lambda: status_text(app) == "● live", what="live again on the new port")
            # the local agent was started again on the new address and beats there
            seen = {a.name: a.last_seen for a in app.agents}

            def beats_again() -> bool:
                return any(a.name == name and a.last_seen and a.last_seen != seen.get(name) for a in app.agents)

            await until(pilot, beats_again, what="the local agent beating on the new server")
            await pilot.press("q")
    finally:
        blocker.close()
        await asyncio.to_thread(embedded.stop)


async def test_embedded_server_that_cannot_start_again_says_so(tmp_path: Path) -> None:
    embedded = Embedded(tmp_path / "data")
    await asyncio.to_thread(embedded.start)
    try:
        app = create_app(DashboardSettings(refresh=0.5), Client(embedded.url, embedded.admin_token), embedded=True)
        app.supervise(embedded, embedded.admin_token)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.connection.state == "ok", what="first poll")
            assert embedded.server is not None
            embedded.python = "/bin/false"  # whatever is started again exits at once
            os.kill(embedded.server.pid, signal.SIGKILL)
            await until(pilot, lambda: "could not be started again" in status_text(app), what="given up")
            assert status_text(app) == "embedded server could not be started again · q quits"
            assert any("the embedded server exited; its log" in n for n in notes(app))
            await pilot.press("q")
        assert not app.is_running
    finally:
        await asyncio.to_thread(embedded.stop)


# --- 2. a refused token ------------------------------------------------------------------------


async def test_refused_token_is_named_and_retried_slowly(server: ServerProcess) -> None:
    app = build_app(server, token="wrong-token")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.connection.state == "refused", what="refusal shown")
        text = status_text(app)
        assert text.startswith("error: token refused: restart with a valid --token, retrying in ")
        assert len(text) <= 70
        note = next(n for n in notes(app) if n.startswith("Token refused"))
        assert "invalid or revoked" in note and "--token" in note and "every 30 s" in note
        # the next try is 30 s away, not 1 s (a try that hammers would show a shorter countdown)
        assert app.connection.retry_at - time.time() > 20
        assert len([n for n in notes(app) if n.startswith("Token refused")]) == 1
