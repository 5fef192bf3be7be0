"""The dashboard on several replicas (``--server R1,R2``; issue 14, trial finding 11): the status bar
names the replica in use (host:port, only when several URLs were given), a switch is announced
from → to, and the return to the first one too. Against two real server processes, the first
killed by its pid and started again."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from octotui import client as client_module
from octotui.client import Client
from octotui.tui.app import DashboardSettings, OctoApp, create_app
from octotui.tui.format import host_port, replica_label
from tests.support.processes import ServerProcess
from tests.support.shots import save_screenshot
from tests.support.tui import SIZE, build_app, text_of
from tests.support.waiting import wait_until_pilot


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two servers answering the same admin token (each its own SQLite: only the address matters)."""
    first = ServerProcess(tmp_path / "r1").start()
    second = ServerProcess(tmp_path / "r2").start()
    yield first, second
    second.stop()
    first.stop()


def notices(app: OctoApp) -> list[str]:
    return [f"{n.title}: {n.message}" for n in app._notifications]


def fits(app: OctoApp, text: str) -> bool:
    """The status bar shows ``text`` whole (not cut by the terminal's width)."""
    label = app.screen.query_one("#sb-server")
    return text_of(app, "#sb-server") == text and label.content_region.width >= len(text)


def test_replica_labels() -> None:
    servers = ["http://127.0.0.1:8431", "https://user:pw@db.example:8432/x", "https://lb.example"]
    assert host_port(servers[0]) == "127.0.0.1:8431"
    assert host_port(servers[1]) == "db.example:8432"  # no credentials on screen
    assert host_port(servers[2]) == "lb.example"
    assert host_port("lb") == "lb"  # no host to take: the text as given
    assert replica_label(servers, servers[1]) == "db.example:8432 (2/3)"


async def test_status_bar_follows_the_replica_in_use(
    pair: tuple[ServerProcess, ServerProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = pair
    monkeypatch.setattr(client_module, "RETURN_PROBE", 0.5)  # come back after 2 healthy answers 0.5 s apart
    urls = f"{first.url},{second.url}"
    settings = DashboardSettings(server=urls, token=first.admin_token, refresh=0.5)
    app = create_app(settings, Client(urls, settings.token, timeout=3))
    on_first = f"127.0.0.1:{first.port} (1/2)"
    on_second = f"127.0.0.1:{second.port} (2/2)"
    async with app.run_test(size=SIZE, notifications=True) as pilot:  # toasts drawn, for the screenshot
        await wait_until_pilot(pilot, lambda: app.info is not None, what="the first answer")
        assert fits(app, on_first), text_of(app, "#sb-server")
        assert not any("replica" in n for n in notices(app))
        assert app.actions.base_url == urls  # what the install lines give agents: both, to fail over too

        assert first.proc is not None
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(timeout=10)
        first.proc = None
        await wait_until_pilot(pilot, lambda: fits(app, on_second), timeout=5, what=f"the status bar on {on_second}")
        said = f"Switched replica: 127.0.0.1:{first.port} → 127.0.0.1:{second.port}"
        assert any(n.startswith(said) for n in notices(app)), notices(app)
        assert "live" in text_of(app, "#sb-state")
        await pilot.pause(0.3)  # the notice drawn
        save_screenshot(app, "main-replica")

        first.start()  # healthy again: the client goes back to the operator's first choice
        await wait_until_pilot(pilot, lambda: fits(app, on_first), timeout=10, what=f"the status bar on {on_first}")
        back = f"Back on the first replica: 127.0.0.1:{second.port} → 127.0.0.1:{first.port}"
        assert any(n.startswith(back) for n in notices(app)), notices(app)


async def test_one_server_keeps_its_url(server: ServerProcess) -> None:
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until_pilot(pilot, lambda: app.info is not None, what="the first answer")
        assert text_of(app, "#sb-server") == server.url
        assert app.client.on_switch is None
