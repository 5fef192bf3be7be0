"""Every screen of the real dashboard on a real server with real agents (and a real JMeter test).

Live figures are not reproducible, so these are not compared with stored snapshots: each test
drives the app to every screen and checks what it shows. With ``--snapshot-update`` (``make
screenshots``) or ``OCTOTUI_SCREENSHOTS=1`` it also saves each screen as an SVG under screenshots/.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets.data_table import ColumnKey

from octotui.client import Client
from octotui.tui.app import DashboardSettings, OctoApp, create_app
from octotui.tui.screens.agent import AgentScreen
from octotui.tui.screens.audit import AuditScreen
from octotui.tui.screens.confirm import ConfirmScreen
from octotui.tui.screens.distribution import DistributionScreen, DistributionTable
from octotui.tui.screens.help import HelpScreen
from octotui.tui.screens.launch import LaunchScreen
from octotui.tui.screens.prompt import PromptScreen
from octotui.tui.screens.provider import ProviderScreen
from octotui.tui.screens.quit import QuitScreen
from octotui.tui.screens.test import TestScreen
from octotui.tui.widgets.charts import Chart
from octotui.tui.widgets.status_bar import StatusBar
from octotui.tui.widgets.tables import AgentsTable, AuditTable, ContainersTable, ErrorsTable, LabelsTable, TestsTable
from tests.support.beating import Beating
from tests.support.processes import ROOT, AgentProcess, ServerProcess
from tests.support.tui import text_of
from tests.support.waiting import wait_until, wait_until_pilot
from tests.support.wireagent import has_per_label_figures, label_stats, running_test

SIZE = (80, 24)
SHOTS = ROOT / "screenshots"
PLAN = ROOT / "examples" / "http-get.jmx"


@pytest.fixture
def save(request: pytest.FixtureRequest) -> Callable[[OctoApp, str], None]:
    """``save(app, name)`` writes screenshots/NAME.svg when screenshots are asked for."""
    wanted = (
        bool(request.config.getoption("--snapshot-update", default=False))
        or os.environ.get("OCTOTUI_SCREENSHOTS") == "1"
    )

    def shoot(app: OctoApp, name: str) -> None:
        text = app.export_screenshot(title=f"octotui — {name}")
        assert "<svg" in text
        # Rich writes cell padding as leading no-break spaces; without xml:space="preserve"
        # librsvg drops them, which shifts coloured cells and right-aligned numbers in the PNGs.
        text = text.replace("<svg ", '<svg xml:space="preserve" ', 1)
        if wanted:
            SHOTS.mkdir(exist_ok=True)
            (SHOTS / f"{name}.svg").write_text(text, encoding="utf-8")

    return shoot


def lab(server: ServerProcess, agents: list[AgentProcess], tmp_path: Path, names: dict[str, str]) -> dict[str, str]:
    """Provider ``lab`` with one agent per ``name -> location``; returns name -> agent id once online."""
    with server.client() as http:
        provider = http.post("/providers", json={"name": "lab"}).raise_for_status().json()
        for name, location in names.items():
            agent = AgentProcess(server.url, provider["token"], tmp_path / name, location, name, "--interval", "1")
            agents.append(agent.start())

        def online() -> dict[str, str] | None:
            found = {a["name"]: a["id"] for a in http.get("/agents").json() if a["status"] == "online"}
            return found if len(found) == len(names) else None

        return dict(wait_until(online, timeout=30, what="agents online"))


def app_on(server: ServerProcess, read_only: bool = False) -> OctoApp:
    settings = DashboardSettings(server=server.url, token=server.admin_token, read_only=read_only, refresh=0.5)
    return create_app(settings, Client(server.url, server.admin_token, timeout=3))


async def test_monitoring_screens(
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path, save: Callable[[OctoApp, str], None]
) -> None:
    ids = lab(server, agents, tmp_path, {"box1": "paris", "box2": "lyon"})
    app = app_on(server)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(AgentsTable)

        def figures() -> bool:
            rows = [table.row_cells(i) for i in ids.values()]
            return all(row is not None and row[4].text != "-" for row in rows)

        await wait_until_pilot(pilot, figures, what="both agents with figures")
        await pilot.pause(1.5)
        save(app, "main")

        await pilot.press("slash", *"lyon")
        await wait_until_pilot(pilot, lambda: table.row_count == 1)
        save(app, "main-filter")
        await pilot.press("escape")

        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        assert "filter agents" in text_of(app, "#help-text")
        save(app, "help")
        await pilot.press("escape")

        await pilot.press("p", "enter")
        assert isinstance(app.screen, ProviderScreen)
        assert any(line.command.startswith("docker run -d") for line in app.screen.lines)
        save(app, "provider")
        await pilot.press("c")
        assert app.clipboard.startswith("OCTOTUI_TOKEN=") and " octotui-agent --server=" in app.clipboard
        await pilot.pause(0.2)
        save(app, "provider-copied")
        await pilot.press("escape")

        await pilot.press("n", *"edge")
        assert isinstance(app.screen, PromptScreen)
        save(app, "provider-new")
        await pilot.press("escape")
        await pilot.press("k")
        assert isinstance(app.screen, ConfirmScreen)
        save(app, "provider-rotate")
        await pilot.press("n")
        await pilot.press("delete")
        assert isinstance(app.screen, ConfirmScreen)
        save(app, "provider-delete")
        await pilot.press("n")

        await pilot.press("u")
        assert isinstance(app.screen, AuditScreen)
        audit = app.screen.query_one(AuditTable)
        await wait_until_pilot(pilot, lambda: audit.row_count >= 1, what="audit entries")
        save(app, "audit")
        await pilot.press("escape")

        await pilot.press("a")
        table.move_cursor(row=table.get_row_index(ids["box1"]))
        await pilot.press("enter")
        assert isinstance(app.screen, AgentScreen)
        cpu = app.screen.query_one("#cpu-chart", Chart)
        await wait_until_pilot(pilot, lambda: len(cpu.values) >= 8, what="8 s of CPU samples")
        await wait_until_pilot(
            pilot, lambda: "box1 · online · lab/paris" in text_of(app, "#agent-title"), what="the title"
        )
        save(app, "agent")
        await pilot.press("escape")

        await pilot.press("l")
        assert isinstance(app.screen, LaunchScreen)
        await pilot.press(*str(tmp_path / "nope.jmx"), "enter")
        assert "no such file" in text_of(app, "#plan-status")
        save(app, "launch-invalid")
        await pilot.press("escape")

        server.stop()
        status = app.screen.query_one(StatusBar)
        await wait_until_pilot(pilot, lambda: "unreachable" in status.state_text()[0])
        await pilot.pause(0.3)
        save(app, "unreachable")
        server.start()
        await wait_until_pilot(pilot, lambda: status.state_text()[0] == "● live", timeout=40, what="live again")

    app = app_on(server, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(AgentsTable)
        await wait_until_pilot(pilot, lambda: table.row_count == 2)
        await pilot.pause(1)
        assert "l" not in app.active_bindings
        save(app, "read-only")

    # a read-only token: the role comes from the server, the install lines lack the token
    with server.client() as http:
        token = http.post("/tokens", json={"name": "wall", "role": "read-only"}).raise_for_status().json()["token"]
    settings = DashboardSettings(server=server.url, token=token, refresh=0.5)
    app = create_app(settings, Client(server.url, token, timeout=3))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until_pilot(pilot, lambda: app.read_only and app.screen.query_one(AgentsTable).row_count == 2)
        await pilot.press("p")
        await pilot.pause(1)
        save(app, "read-only-token")
        await pilot.press("enter")
        assert isinstance(app.screen, ProviderScreen)
        save(app, "provider-read-only")


@pytest.mark.docker
@pytest.mark.jmeter
@pytest.mark.xdist_group("jmeter")
async def test_load_test_screens(  # type: ignore[no-untyped-def]
    server: ServerProcess,
    agents: list[AgentProcess],
    tmp_path: Path,
    save: Callable[[OctoApp, str], None],
    jmeter_image: str,
    http_target,
    docker_client,
) -> None:
    lab(server, agents, tmp_path, {"gen1": "paris", "gen2": "lyon"})
    app = app_on(server)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until_pilot(
            pilot, lambda: len(app.agents) == 2 and all(a.docker and a.docker.available for a in app.agents)
        )
        await pilot.press("l")
        assert isinstance(app.screen, LaunchScreen)
        dialog = app.screen
        dialog.query_one("#plan").value = str(PLAN)  # type: ignore[attr-defined]
        dialog.query_one("#name").value = "checkout"  # type: ignore[attr-defined]
        dialog.query_one("#containers").value = "2"  # type: ignore[attr-defined]
        dialog.query_one("#users").value = "2"  # type: ignore[attr-defined]
        dialog.query_one("#duration").value = "120"  # type: ignore[attr-defined]
        dialog.query_one("#properties").value = f"host=127.0.0.1 port={http_target.port} think_ms=20"  # type: ignore[attr-defined]
        dialog.query_one("#image").value = jmeter_image  # type: ignore[attr-defined]
        await pilot.press("ctrl+r")
        await wait_until_pilot(
            pilot, lambda: "ctrl+l launches it" in text_of(app, "#preview"), what="placement preview"
        )
        # Placement weighs free CPU too: on a loaded machine both may land on one agent.
        assert "2 containers on" in text_of(app, "#preview") and "of lab" in text_of(app, "#preview")
        save(app, "launch-preview")
        await pilot.press("ctrl+l")
        await wait_until_pilot(pilot, lambda: not isinstance(app.screen, LaunchScreen), what="launch")

        tests = app.screen.query_one(TestsTable)
        await wait_until_pilot(pilot, lambda: tests.row_count == 1)
        test_id = tests.row_keys[0]

        def hitting() -> bool:
            test = next((t for t in app.tests if t.id == test_id), None)
            return test is not None and test.state == "running" and test.results.samples > 0

        await wait_until_pilot(pilot, hitting, timeout=90, what="live JMeter figures")
        await pilot.press("t")
        save(app, "main-running")

        await pilot.press("enter")
        assert isinstance(app.screen, TestScreen)
        rate = app.screen.query_one("#rate-chart", Chart)
        await wait_until_pilot(pilot, lambda: len(rate.values) >= 25, timeout=90, what="25 points of hits/s")
        assert app.screen.query_one(ContainersTable).row_count == 2
        assert "checkout · running · lab" in text_of(app, "#test-title")
        save(app, "test")

        await pilot.press("s")
        assert isinstance(app.screen, ConfirmScreen)
        save(app, "stop-confirm")
        await pilot.press("n")
        await pilot.press("escape")

        await pilot.press("d")
        assert isinstance(app.screen, DistributionScreen)
        dist = app.screen.query_one(DistributionTable)

        def evens() -> int:
            cells = [dist.row_cells(k) for k in dist.row_keys]
            return [c[3].text for c in cells if c and c[3].text].count("even")

        # a location is "even" only while its agent is online: wait for the steady picture
        await wait_until_pilot(pilot, lambda: dist.row_count == 4 and evens() == 2, what="both locations even")
        save(app, "distribution")
        await pilot.press("escape")

        await pilot.press("ctrl+p")
        await pilot.press(*"distri")
        await pilot.pause(0.5)
        save(app, "command-palette")
        await pilot.press("escape")

        await pilot.press("q")
        assert isinstance(app.screen, QuitScreen)
        assert "[s] stop them and quit" in text_of(app, "#quit-question")
        save(app, "quit-running")
        await pilot.press("escape")

        await pilot.press("t", "s", "y")
        await wait_until_pilot(
            pilot,
            lambda: next(t for t in app.tests if t.id == test_id).state in ("finished", "failed"),
            timeout=90,
            what="the test to end",
        )
        test = next(t for t in app.tests if t.id == test_id)
        assert test.state == "finished" and test.results.samples > 0
        await pilot.press("enter")
        await wait_until_pilot(pilot, lambda: "samples" in text_of(app, "#test-title"))
        await pilot.pause(1)
        assert "p99" in text_of(app, "#test-title")
        save(app, "test-finished")
        await pilot.press("escape")

        # a test that cannot start: its reason and its container's error in full
        with server.client() as http:
            body = {"name": "no-image", "plan": PLAN.read_text(), "provider": "lab", "containers": 1,
                    "image": "127.0.0.1:9/octotui-missing:none"}  # fmt: skip
            failing = http.post("/tests", json=body).raise_for_status().json()["id"]
        await wait_until_pilot(
            pilot, lambda: any(t.id == failing and t.state == "failed" for t in app.tests), timeout=60
        )
        await pilot.press("t", "home", "enter")
        assert isinstance(app.screen, TestScreen) and app.screen.test_id == failing
        await wait_until_pilot(pilot, lambda: app.screen.query_one("#test-reason").display)
        await pilot.pause(1)
        save(app, "test-failed")
    wait_until(
        lambda: not docker_client.containers.list(all=True, filters={"label": f"io.octotui.test={test_id}"}),
        timeout=60,
        what="containers removed",
    )


async def test_labels_and_errors_screens(server: ServerProcess, save: Callable[[OctoApp, str], None]) -> None:
    """The test screen's labels and errors panes, at 80x24 and 200x50, fed by a wire-level agent (the
    figures are the test's to choose; no Docker needed)."""
    agent, report = running_test(server, "checkout")
    if not has_per_label_figures(server, report["test_id"]):
        agent.close()
        pytest.skip("the server has no GET /api/v1/tests/{id}/labels yet (404): issue 12's server part")
    names = ["GET /", "GET /catalog", "GET /product/{id}", "POST /cart/add", "GET /cart", "POST /checkout",
             "POST /login", "GET /search", "GET /static/app.js", "TC checkout flow",
             "GET /account/orders/history"]  # fmt: skip
    labels = [
        label_stats(name, [10.0 + 25 * i + (j % 40) * (3 + i) for j in range(400 + 37 * i)], span_s=60.0)
        for i, name in enumerate(names)
    ]
    labels[5]["errors"], labels[7]["errors"] = 61, 4
    errors = [
        {"label": "POST /checkout", "code": "500", "message": "Internal Server Error", "count": 43},
        {"label": "POST /checkout", "code": "Non HTTP response code: java.net.SocketTimeoutException",
         "message": "Non HTTP response message: Read timed out", "count": 18},
        {"label": "GET /search", "code": "404", "message": "Not Found", "count": 4},
    ]  # fmt: skip
    figures = {"samples": sum(x["samples"] for x in labels), "errors": 65, "rate": 110.0, "avg_ms": 160.0,
               "min_ms": 10, "max_ms": 900, "active": 20}  # fmt: skip

    async def shoot(size: tuple[int, int], suffix: str) -> None:
        agent.beat({**report, "figures": figures, "labels": labels, "errors": errors})
        app = app_on(server)
        async with app.run_test(size=size) as pilot:
            await wait_until_pilot(pilot, lambda: app.screen.query_one(TestsTable).row_count == 1, what="the test")
            await pilot.press("t", "enter")
            assert isinstance(app.screen, TestScreen)
            table = app.screen.query_one(LabelsTable)
            await wait_until_pilot(pilot, lambda: table.row_count == len(names), what="every label")
            await pilot.press("l")
            await pilot.pause(0.5)
            # On a wide terminal the names stretch only so far: the figures stay beside them.
            width = table.columns[ColumnKey("label")].width
            assert width == (48 if size[0] == 200 else 18), width
            save(app, f"test-labels{suffix}")
            await pilot.press("e")
            await wait_until_pilot(pilot, lambda: app.screen.query_one(ErrorsTable).row_count == 3, what="errors")
            await pilot.pause(0.5)
            save(app, f"test-errors{suffix}")

    try:
        await shoot(SIZE, "")
        await shoot((200, 50), "-wide")
    finally:
        agent.close()


async def test_results_screens(server: ServerProcess, save: Callable[[OctoApp, str], None]) -> None:
    """A running test's charts (eighth blocks, elapsed-time axis), a container's CPU and memory, the
    test stopped, and the re-run, edit-and-launch and delete dialogs, at 80x24 (and the test screen
    at 200x50), fed by a wire-level agent (no Docker needed)."""
    agent, report = running_test(server, "checkout")
    beating = Beating(agent, report)
    test_id = report["test_id"]

    async def open_test(app: OctoApp, pilot: Pilot[int]) -> None:
        await wait_until_pilot(pilot, lambda: app.screen.query_one(TestsTable).row_count == 1)
        await pilot.press("t", "enter")
        assert isinstance(app.screen, TestScreen)
        rate = app.screen.query_one("#rate-chart", Chart)
        await wait_until_pilot(pilot, lambda: len(rate.values) >= 30, timeout=60, what="30 points")
        await pilot.pause(0.5)

    try:
        wide = app_on(server)
        async with wide.run_test(size=(200, 50)) as pilot:
            await open_test(wide, pilot)
            save(wide, "test-live-wide")
        app = app_on(server)
        async with app.run_test(size=SIZE) as pilot:
            await open_test(app, pilot)
            save(app, "test-live")
            await pilot.press("m")
            cpu = app.screen.query_one("#cpu-usage", Chart)
            await wait_until_pilot(pilot, lambda: len(cpu.values) >= 20, timeout=30, what="20 CPU samples")
            await pilot.pause(0.5)
            save(app, "test-usage")
            with server.client() as http:
                http.post(f"/tests/{test_id}/stop").raise_for_status()
            beating.end()
            await wait_until_pilot(pilot, lambda: "· stopped ·" in text_of(app, "#test-title"), what="stopped")
            await pilot.press("c")
            await pilot.pause(1)
            save(app, "test-stopped")
            if not has_plan_route(server, test_id):
                return
            await pilot.press("R")
            assert isinstance(app.screen, ConfirmScreen)
            save(app, "rerun-confirm")
            await pilot.press("n", "E")
            await wait_until_pilot(pilot, lambda: isinstance(app.screen, LaunchScreen), what="the launch dialog")
            await pilot.pause(0.3)
            save(app, "launch-prefilled")
            await pilot.press("escape", "delete")
            assert isinstance(app.screen, ConfirmScreen)
            save(app, "test-delete-confirm")
            await pilot.press("n", "escape")
            await pilot.pause(0.5)
            save(app, "main-stopped")
    finally:
        beating.stop.set()
        agent.close()


def has_plan_route(server: ServerProcess, test_id: str) -> bool:
    """False while the server answers 404 to ``GET /tests/{id}/plan`` (issue 12's server part)."""
    with server.client() as http:
        return http.get(f"/tests/{test_id}/plan").status_code != 404
