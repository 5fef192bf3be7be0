"""States the dashboard must name plainly (second new-user trial): an embedded child that exited, a
refused token, figures that are old or final, keys that cannot act here."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from rich.segment import Segment
from textual.app import App, ComposeResult
from textual.widgets import Input

import octotui.tui.app
from octotui.client import Client
from octotui.embedded import Embedded, local_agent_name
from octotui.tui.app import THEME, DashboardSettings, OctoApp, create_app
from octotui.tui.rows import CONTAINER_STATE_STYLE
from octotui.tui.screens.agent import AgentScreen
from octotui.tui.screens.confirm import ConfirmScreen
from octotui.tui.screens.launch import LaunchScreen
from octotui.tui.screens.prompt import PromptScreen
from octotui.tui.screens.test import TestScreen
from octotui.tui.widgets.charts import Chart
from octotui.tui.widgets.keyed_table import Cell, KeyedTable, theme_style
from octotui.tui.widgets.status_bar import StatusBar
from octotui.tui.widgets.tables import AgentsTable, AuditTable, ContainersTable, ProvidersTable, TestsTable
from tests.support.processes import AgentProcess, ServerProcess
from tests.support.tui import (
    MISSING_IMAGE,
    SIZE,
    agent_id,
    build_app,
    create_test,
    docker_lab,
    long_test,
    make_provider,
    start_agent,
    text_of,
)
from tests.support.waiting import wait_until, wait_until_pilot


@contextlib.asynccontextmanager
async def embedded_dashboard(tmp_path: Path) -> AsyncIterator[tuple[Embedded, OctoApp]]:
    """Embedded mode in ``tmp_path/data``: its server and agent, and a dashboard watching them."""
    embedded = Embedded(tmp_path / "data")
    await asyncio.to_thread(embedded.start)
    try:
        app = create_app(DashboardSettings(refresh=0.5), Client(embedded.url, embedded.admin_token), embedded=True)
        app.supervise(embedded, embedded.admin_token)
        yield embedded, app
    finally:
        await asyncio.to_thread(embedded.stop)


def notes(app: OctoApp) -> list[str]:
    return [f"{n.title}: {n.message}" for n in app._notifications]


def status_text(app: OctoApp) -> str:
    return app.screen.query_one(StatusBar).state_text()[0]


# --- 1. an embedded child that exits -----------------------------------------------------------


async def test_embedded_server_killed_is_named_and_started_again_elsewhere(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    async with embedded_dashboard(tmp_path) as (embedded, app):
        blocker = socket.socket()
        try:
            async with app.run_test(size=SIZE) as pilot:
                name = local_agent_name()

                def local_beats() -> bool:
                    return any(a.name == name and a.host is not None for a in app.agents)

                await wait_until_pilot(pilot, local_beats, what="the local agent's figures")
                assert embedded.server is not None
                old_url, old_pid = embedded.url, embedded.server.pid
                os.kill(old_pid, signal.SIGKILL)
                # Its port taken meanwhile (no await in between: the app cannot restart it first), so
                # the server comes back elsewhere and the dashboard must follow it there. The port is
                # free once the last of the server's threads is gone: bind until it is.
                port = int(old_url.rsplit(":", 1)[1])
                blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                deadline = time.monotonic() + 10
                while True:
                    try:
                        blocker.bind(("127.0.0.1", port))
                        break
                    except OSError:
                        assert time.monotonic() < deadline, "the killed server's port never came free"
                        time.sleep(0.001)  # noqa: ASYNC251 - no await on purpose; leaves the dying server a core
                blocker.listen()
                await wait_until_pilot(
                    pilot, lambda: any("Embedded server exited" in n for n in notes(app)), what="exit notice"
                )
                notice = next(n for n in notes(app) if "Embedded server exited" in n)
                assert "killed by signal 9" in notice and str(data_dir / "server.log") in notice
                assert "last line:" in notice
                # a failed start on the taken port, the agent stopped, then a start elsewhere: slow on CI
                await wait_until_pilot(
                    pilot, lambda: any("started again" in n for n in notes(app)), 60, what="restart notice"
                )
                assert embedded.url != old_url and embedded.server.pid != old_pid
                assert app.client.base_url == embedded.url
                assert embedded.url in str(app.screen.query_one(StatusBar).query_one("#sb-server").render())
                await wait_until_pilot(pilot, lambda: status_text(app) == "● live", what="live again on the new port")
                # the local agent was started again on the new address and beats there
                seen = {a.name: a.last_seen for a in app.agents}

                def beats_again() -> bool:
                    return any(a.name == name and a.last_seen and a.last_seen != seen.get(name) for a in app.agents)

                await wait_until_pilot(pilot, beats_again, what="the local agent beating on the new server")
                await pilot.press("q")
        finally:
            blocker.close()


async def test_embedded_server_killed_comes_back_on_its_port(tmp_path: Path) -> None:
    async with embedded_dashboard(tmp_path) as (embedded, app):
        client = app.client
        async with app.run_test(size=SIZE) as pilot:
            await wait_until_pilot(pilot, lambda: app.connection.state == "ok", what="first poll")
            assert embedded.server is not None
            old_url, old_pid = embedded.url, embedded.server.pid
            os.kill(old_pid, signal.SIGKILL)
            await wait_until_pilot(
                pilot, lambda: any("Embedded server started again" in n for n in notes(app)), 60, what="restart"
            )
            assert embedded.url == old_url and embedded.server.pid != old_pid
            assert app.client is client, "same address: the same client"
            await wait_until_pilot(pilot, lambda: status_text(app) == "● live", what="live again")
            await pilot.press("q")


async def test_embedded_server_that_cannot_start_again_says_so(tmp_path: Path) -> None:
    async with embedded_dashboard(tmp_path) as (embedded, app):
        async with app.run_test(size=SIZE) as pilot:
            await wait_until_pilot(pilot, lambda: app.connection.state == "ok", what="first poll")
            assert embedded.server is not None
            embedded.python = "/bin/false"  # whatever is started again exits at once
            os.kill(embedded.server.pid, signal.SIGKILL)
            await wait_until_pilot(pilot, lambda: "could not be started again" in status_text(app), what="given up")
            assert status_text(app) == "embedded server could not be started again · q quits"
            assert any("the embedded server exited; its log" in n for n in notes(app))
            await pilot.press("q")
        assert not app.is_running


async def test_embedded_agent_killed_is_named_and_started_again(tmp_path: Path) -> None:
    async with embedded_dashboard(tmp_path) as (embedded, app), app.run_test(size=SIZE) as pilot:
        await wait_until_pilot(pilot, lambda: app.connection.state == "ok", what="first poll")
        assert embedded.agent is not None
        old_pid = embedded.agent.pid
        os.kill(old_pid, signal.SIGKILL)
        await wait_until_pilot(
            pilot, lambda: any("Embedded agent started again" in n for n in notes(app)), what="restart"
        )
        notice = next(n for n in notes(app) if "Embedded agent exited" in n)
        assert "killed by signal 9" in notice and str(tmp_path / "data" / "agent.log") in notice
        assert embedded.agent.pid != old_pid and embedded.agent.poll() is None
        assert status_text(app) == "● live", "the server was not touched"
        await pilot.press("q")


# --- 2. a refused token ------------------------------------------------------------------------


async def test_refused_token_is_named_and_retried_slowly(server: ServerProcess) -> None:
    app = build_app(server, token="wrong-token")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until_pilot(pilot, lambda: app.connection.state == "refused", what="refusal shown")
        text = status_text(app)
        assert text.startswith("error: token refused: restart with a valid --token, retrying in ")
        assert len(text) <= 70
        note = next(n for n in notes(app) if n.startswith("Token refused"))
        assert "invalid or revoked" in note and "--token" in note and "every 30 s" in note
        # the next try is 30 s away, not 1 s (a try that hammers would show a shorter countdown)
        assert app.connection.retry_at - time.time() > 20
        assert len([n for n in notes(app) if n.startswith("Token refused")]) == 1


# --- 3. figures that must not disagree or lie --------------------------------------------------


def cells_of(table: KeyedTable, key: str | None = None) -> list[str]:
    key = key or table.row_keys[0]
    return [c.text for c in table.row_cells(key) or ()]


@pytest.mark.docker
async def test_failed_test_without_samples_shows_dashes(
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path
) -> None:
    docker_lab(server, agents, tmp_path)
    test = create_test(server, name="nothing", image=MISSING_IMAGE)
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until_pilot(
            pilot, lambda: any(t.id == test["id"] and t.state == "failed" for t in app.tests), timeout=60
        )
        await pilot.press("t", "enter")
        assert isinstance(app.screen, TestScreen)
        table = app.screen.query_one(ContainersTable)
        await wait_until_pilot(
            pilot, lambda: table.row_count == 1 and cells_of(table)[2] == "failed", what="failed container"
        )
        assert cells_of(table)[3:6] == ["-", "-", "-"], "no CPU, memory or hits/s for an ended container"
        header = text_of(app, "#test-title").splitlines()
        assert header[1].startswith("whole test: 0 samples · 0.0/s · avg - ms")
        assert header[2] == "users now - · times: min - · max - · p90 - · p95 - · p99 - ms (final)"


@pytest.mark.docker
@pytest.mark.jmeter
@pytest.mark.xdist_group("jmeter")
async def test_running_test_figures_are_labelled_stale_and_final(  # type: ignore[no-untyped-def]
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path, jmeter_image: str, http_target, docker_client
) -> None:
    test = long_test(server, agents, tmp_path, jmeter_image, http_target, "live")
    try:
        app = build_app(server)
        async with app.run_test(size=SIZE) as pilot:

            def sampled() -> bool:
                return any(t.id == test["id"] and t.results.samples > 0 for t in app.tests)

            await wait_until_pilot(pilot, sampled, timeout=120, what="the test's first samples")
            await pilot.press("t", "enter")
            assert isinstance(app.screen, TestScreen)
            rate = app.screen.query_one("#rate-chart", Chart)
            await wait_until_pilot(pilot, lambda: len(rate.values) > 0, what="a point of the series")
            # The header is the whole test's; the charts are each interval's, and say so.
            assert text_of(app, "#test-title").splitlines()[1].startswith("whole test: ")
            # at 80 columns a chart is too narrow for "(peak …)": its title stays one line without it
            for chart, words in ((rate, "hits/s now "), (app.screen.query_one("#rt-chart", Chart), "avg now ")):
                title = chart.render().plain.splitlines()[0]
                assert title.startswith(words) and len(title) <= chart.size.width, title
            await pilot.press("escape")
            tests = app.screen.query_one(TestsTable)
            await wait_until_pilot(
                pilot, lambda: cells_of(tests, test["id"])[5] not in ("", "-"), what="an elapsed time"
            )
            # The server out of reach: the elapsed time stops, marked stale like the agents' Seen.
            server.stop()
            await wait_until_pilot(pilot, lambda: app.screen.has_class("-stale"), what="stale")
            assert cells_of(tests, test["id"])[5] == "stale"
            server.start()
            await wait_until_pilot(pilot, lambda: not app.screen.has_class("-stale"), timeout=40, what="fresh again")
            await wait_until_pilot(pilot, lambda: cells_of(tests, test["id"])[5] != "stale", what="elapsed again")
            # Once the container has ended, its live figures are dashes, not its last ones.
            with server.client() as http:
                http.post(f"/tests/{test['id']}/stop").raise_for_status()
            await pilot.press("t", "enter")
            assert isinstance(app.screen, TestScreen)
            table = app.screen.query_one(ContainersTable)
            await wait_until_pilot(
                pilot, lambda: cells_of(table)[2:3] == ["finished"], timeout=60, what="container finished"
            )
            assert cells_of(table)[3:6] == ["-", "-", "-"]
    finally:
        with server.client() as http:
            http.post(f"/tests/{test['id']}/stop")
        wait_until(
            lambda: not docker_client.containers.list(all=True, filters={"label": f"io.octotui.test={test['id']}"}),
            timeout=60,
            what="containers removed",
        )


async def test_late_agent_figures_are_marked_with_their_age(
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path
) -> None:
    provider = make_provider(server)
    agent = start_agent(server, agents, tmp_path, provider["token"])
    found = wait_until(lambda: agent_id(server), timeout=30, what="agent registered")
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(AgentsTable)
        await wait_until_pilot(pilot, lambda: cells_of(table, found)[4:5] not in ([], ["-"]), what="a CPU figure")
        await pilot.press("enter")
        assert isinstance(app.screen, AgentScreen)
        cpu = app.screen.query_one("#cpu-chart", Chart)
        await wait_until_pilot(pilot, lambda: cpu.values, what="CPU samples")
        assert cpu.render().plain.startswith("CPU ") and not cpu.render().plain.startswith("CPU last")
        assert "last figures" not in text_of(app, "#figures")
        agent.stop()
        await wait_until_pilot(pilot, lambda: "last figures" in text_of(app, "#figures"), what="figures marked old")
        first = text_of(app, "#figures").splitlines()[0]
        assert first.split(":")[0] in ("late", "offline") and first.endswith(" old")
        assert cpu.render().plain.startswith("CPU last ")
        assert "docker: engine" in text_of(app, "#figures")  # under the "last figures" heading


# --- 4. the audit screen's arrow ---------------------------------------------------------------


async def test_audit_arrow_says_newest_first(server: ServerProcess) -> None:
    with server.client() as http:
        http.post("/providers", json={"name": "first"}).raise_for_status()
        http.post("/providers", json={"name": "second"}).raise_for_status()
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("u")
        table = app.screen.query_one(AuditTable)
        await wait_until_pilot(pilot, lambda: table.row_count >= 2, what="audit rows")
        label = str(table.columns[next(k for k in table.columns if k.value == "when")].label)
        assert label.endswith("▼") and table.sort_label() == "sorted by When ▼"
        assert "second" in cells_of(table)[5], "newest first"


# --- 5, 6. words and keys ----------------------------------------------------------------------


async def test_one_agent_delete_question_and_n_from_any_table(
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path
) -> None:
    provider = make_provider(server)
    start_agent(server, agents, tmp_path, provider["token"])
    wait_until(lambda: agent_id(server), timeout=30, what="agent registered")
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        providers = app.screen.query_one(ProvidersTable)
        await wait_until_pilot(pilot, lambda: cells_of(providers)[1:2] == ["1"], what="the provider's agent")
        assert app.screen.query_one(AgentsTable).has_focus
        await pilot.press("n")  # from the agents table: works anyway
        assert isinstance(app.screen, PromptScreen)
        await pilot.press("escape")
        await pilot.press("p", "delete")
        assert isinstance(app.screen, ConfirmScreen)
        question = text_of(app, "#question")
        assert "Its agent is removed and its token revoked." in question and "1 agents" not in question
        await pilot.press("n")
        assert not isinstance(app.screen, ConfirmScreen)


async def test_read_only_keys_say_why_they_do_nothing(server: ServerProcess) -> None:
    make_provider(server)
    app = build_app(server, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until_pilot(
            pilot, lambda: app.screen.query_one(ProvidersTable).row_count == 1, what="the provider row"
        )
        await pilot.press("l")
        assert not isinstance(app.screen, LaunchScreen)
        assert notes(app)[-1] == ": read-only: launching is disabled"
        await pilot.press("n")
        assert not isinstance(app.screen, PromptScreen)
        assert notes(app)[-1] == ": read-only: changing providers is disabled"
        await pilot.press("p", "k")
        assert not isinstance(app.screen, ConfirmScreen)
        assert notes(app)[-1] == ": read-only: changing providers is disabled"
        await pilot.press("slash", "l")  # typed into the filter: no notice
        assert len(notes(app)) == 3 and app.screen.query_one("#filter", Input).value == "l"


class _Containers(App[None]):
    """A containers table alone, in the dashboard's stylesheet and theme."""

    CSS_PATH = Path(octotui.tui.app.__file__).with_name("app.tcss")

    def compose(self) -> ComposeResult:
        yield ContainersTable(id="test-containers")

    def on_mount(self) -> None:
        self.register_theme(THEME)
        self.theme = THEME.name


@pytest.mark.parametrize("state", ["failed", "lost"])
async def test_a_failed_state_keeps_its_colour_under_the_cursor(state: str) -> None:
    app = _Containers()
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(ContainersTable)
        cols = [c.key for c in table.COLUMNS]
        row = [Cell(state, CONTAINER_STATE_STYLE[state]) if k == "state" else Cell(k[:4]) for k in cols]
        table.sync({"c1": row, "c2": [Cell("-") for _ in cols]})
        table.focus()
        table.move_cursor(row=0)
        await pilot.pause()
        error = theme_style(app.theme_variables, "error")
        assert not isinstance(error, str)

        def state_segment(y: int) -> Segment:
            return next(s for s in table.render_line(y) if s.text.strip() == state)

        under = state_segment(1)  # line 0 is the header; the cursor is on the first row
        cursor = table.get_component_rich_style("datatable--cursor")
        assert under.style is not None and under.style.bgcolor == cursor.bgcolor, "the row is the cursor's"
        assert under.style.color == error.color, f"{state} under the cursor drawn in {under.style.color}"
        other = next(s for s in table.render_line(1) if s.text.strip() == "agen")
        assert other.style is not None and other.style.color == cursor.color, "plain cells keep the cursor's colour"
