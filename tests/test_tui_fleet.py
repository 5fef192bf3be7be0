"""The dashboard for many agents (issue 15, part 5): the ``:`` command line, marks and bulk actions,
a main screen that fits its content, CPU/memory bars, fleet states, and a theme whose red means
trouble only, even on a 16-colour terminal. Against a real server process and wire-level agents."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from rich.color import ColorSystem
from textual import events
from textual.app import App
from textual.color import Color
from textual.widgets import Input, Label

from octotui.protocol import Agent, CriterionResult, DockerInfo, HostSample, Test
from octotui.tui.app import OctoApp
from octotui.tui.appcommands import monitors_screen
from octotui.tui.rows import agent_cells, check_cell
from octotui.tui.screens.agent import AgentScreen
from octotui.tui.screens.command import CommandScreen
from octotui.tui.screens.confirm import ConfirmScreen
from octotui.tui.screens.help import HelpScreen
from octotui.tui.screens.main import table_heights
from octotui.tui.screens.provider import ProviderScreen
from octotui.tui.screens.quit import QuitScreen
from octotui.tui.screens.test import TestScreen
from octotui.tui.widgets.tables import AgentContainersTable, AgentsTable, ProvidersTable, TestsTable
from tests.support.fleet import FleetAgent, Heartbeats, agents_by_name, fleet, run_launches
from tests.support.processes import ServerProcess
from tests.support.shots import save_screenshot
from tests.support.tui import SIZE, build_app
from tests.support.waiting import wait_until_pilot
from tests.support.wire import PLAN

#: ANSI numbers of red and bright red in a 16-colour terminal.
REDS = {1, 9}


def ansi16(variables: dict[str, str], name: str) -> int:
    """The 16-colour ANSI number a theme variable rounds to (blended onto the background)."""
    colour = Color.parse(variables["background"]) + Color.parse(variables[name])
    number = colour.rich_color.downgrade(ColorSystem.STANDARD).number
    assert number is not None
    return number


@pytest.fixture
def lab(server: ServerProcess) -> Iterator[list[FleetAgent]]:
    """Provider ``lab`` with agents gen1 and gen2 online, and a test ``shop`` running on one."""
    agents = fleet(server, "gen1", "gen2")
    with server.client() as http:
        made = http.post("/tests", json={"name": "shop", "plan": PLAN, "provider": "lab", "containers": 1})
        assert made.status_code == 201, made.text
    assert len(run_launches(agents)) == 1
    beating = Heartbeats(agents)
    yield agents
    beating.end()


async def loaded(app: OctoApp, pilot: object, agents: int = 2, tests: int = 1) -> None:
    await wait_until_pilot(
        pilot,  # type: ignore[arg-type]
        lambda: len(app.agents) == agents and len(app.tests) == tests and app.providers,
        what="agents, tests and providers",
    )


def hints(app: OctoApp) -> str:
    return str(app.screen.query_one("#command-hints", Label).render())


# --- Red is for trouble only, also once a 16-colour terminal rounds the theme's colours.


def test_headers_and_key_hints_are_not_red_in_16_colours() -> None:
    # Textual's own theme: accent (headers, key hints) and warning round to bright red.
    default = App[None]().get_css_variables()
    assert ansi16(default, "accent") in REDS and ansi16(default, "warning") in REDS
    variables = OctoApp(client=None, server_label="x").get_css_variables()  # type: ignore[arg-type]
    for name in ("accent", "footer-key-foreground", "primary", "warning", "success", "foreground"):
        assert ansi16(variables, name) not in REDS, name
    assert ansi16(variables, "error") in REDS
    assert len({ansi16(variables, n) for n in ("accent", "warning", "error", "success")}) == 4


async def test_table_headers_use_the_accent(server: ServerProcess) -> None:
    app = build_app(server)
    async with app.run_test(size=SIZE):
        table = app.screen.query_one(AgentsTable)
        header = table.get_component_rich_style("datatable--header")
        assert header.color is not None
        assert header.color.downgrade(ColorSystem.STANDARD).number not in REDS
        marked = table.get_component_rich_style("keyed-table--marked")
        assert marked.color is not None and marked.color.downgrade(ColorSystem.STANDARD).number == 6


# --- ``:`` opens a line with completion; each command does what it says; errors are said in it.


async def test_completion_and_each_command(server: ServerProcess, lab: list[FleetAgent]) -> None:
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(app, pilot)
        await pilot.press("colon")
        assert isinstance(app.screen, CommandScreen)
        field = app.screen.field
        await pilot.press("a", "g")
        assert ":agents" in hints(app) and ":agent" in hints(app)
        save_screenshot(app, "main-command")
        await pilot.press("tab")
        assert field.value == "agent"
        await pilot.press("space", "g", "tab")
        assert field.value == "agent gen"  # gen1 and gen2 share it
        assert ":agent gen1" in hints(app) and ":agent gen2" in hints(app)
        await pilot.press("2", "enter")
        assert isinstance(app.screen, AgentScreen) and app.screen.agent_id == lab[1].id

        await pilot.press("colon", *"tests", "enter")
        assert not isinstance(app.screen, AgentScreen), "back on the main screen"
        assert isinstance(app.screen.focused, TestsTable)
        await pilot.press("colon", *"providers", "enter")
        assert isinstance(app.screen.focused, ProvidersTable)
        await pilot.press("colon", *"agents", "enter")
        assert isinstance(app.screen.focused, AgentsTable)

        await pilot.press("colon", *"provider l", "tab")
        assert app.screen.field.value == "provider lab"
        await pilot.press("enter")
        assert isinstance(app.screen, ProviderScreen)
        await pilot.press("escape", "colon", *"test sh", "tab", "enter")
        assert isinstance(app.screen, TestScreen) and app.screen.test_id == app.tests[0].id
        await pilot.press("escape", "colon", *"help", "enter")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")

        await pilot.press("colon", *"stop shop", "enter")
        assert isinstance(app.screen, ConfirmScreen), hints(app)
        assert "Stop test shop" in app.screen.question
        await pilot.press("y")

        def stopped() -> bool:
            with server.client() as http:
                test = http.get("/tests").json()[0]
                return test["stopped"] or test["state"] in ("stopping", "finished")

        await wait_until_pilot(pilot, stopped, what="shop stopped on the server")

        await pilot.press("colon", *"q", "enter")
        # shop may still be stopping: then quitting asks what to do with it first
        await wait_until_pilot(pilot, lambda: app.return_code == 0 or isinstance(app.screen, QuitScreen), what="quit")


async def test_unknown_wrong_names_and_escape(server: ServerProcess, lab: list[FleetAgent]) -> None:
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(app, pilot)
        await pilot.press("colon", *"frobnicate", "enter")
        assert isinstance(app.screen, CommandScreen), "stays open to be corrected"
        assert "unknown command: frobnicate" in hints(app)
        app.screen.field.value = ""
        await pilot.press(*"agent nobody", "enter")
        assert "no agent named nobody" in hints(app)
        app.screen.field.value = ""
        await pilot.press(*"agents now", "enter")
        assert ":agents takes no argument" in hints(app)
        app.screen.field.value = ""
        await pilot.press(*"drain", "enter")
        assert ":drain needs a agent name" in hints(app) or ":drain needs an agent name" in hints(app)
        app.screen.field.value = ""
        await pilot.press(*"monitors", "enter")
        if monitors_screen() is None:
            assert "monitors: not available in this build" in hints(app)
            app.screen.field.value = ""
        else:  # the build has the monitors screen: it opens
            await wait_until_pilot(pilot, lambda: type(app.screen).__name__ == "MonitorsScreen", what="monitors")
            await app.pop_screen()
            await pilot.press("colon")
        await pilot.press("escape")
        assert not isinstance(app.screen, CommandScreen)
        assert isinstance(app.screen.focused, AgentsTable), "escape closed the line, nothing else"


async def test_a_colon_typed_into_a_field_stays_there(server: ServerProcess) -> None:
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("slash", "colon", "x")
        assert not isinstance(app.screen, CommandScreen)
        assert app.screen.query_one("#filter", Input).value == ":x"


async def test_read_only_refuses_changes(server: ServerProcess, lab: list[FleetAgent]) -> None:
    app = build_app(server, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(app, pilot)
        await pilot.press("colon", *"drain gen1", "enter")
        assert "read-only: draining agents is disabled" in hints(app)
        app.screen.field.value = ""  # type: ignore[attr-defined]
        await pilot.press(*"stop shop", "enter")
        assert "read-only: stopping tests is disabled" in hints(app)
        await pilot.press("escape")
    assert not agents_by_name(server)["gen1"]["drained"]
    with server.client() as http:
        assert http.get("/tests").json()[0]["state"] == "running"


async def test_no_keystroke_lost_when_typed_fast(server: ServerProcess, lab: list[FleetAgent]) -> None:
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(app, pilot)
        # Every key queued at once, as a paste or tmux send-keys delivers them: none waits for
        # the command line to be open.
        for key, char in [("colon", ":"), *[(c, c) for c in "agent gen1"], ("enter", "\r")]:
            app.post_message(events.Key("space" if char == " " else key, char))
        await wait_until_pilot(pilot, lambda: isinstance(app.screen, AgentScreen), what="gen1's screen")
        assert app.screen.agent_id == lab[0].id  # type: ignore[attr-defined]


# --- Space marks agents; D drains the marked ones, on the server, after a question.


async def test_mark_two_and_drain_them(server: ServerProcess, lab: list[FleetAgent]) -> None:
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(app, pilot)
        table = app.screen.query_one(AgentsTable)
        await wait_until_pilot(pilot, lambda: table.row_count == 2)
        await pilot.press("space", "space")
        assert table.marks == {lab[0].id, lab[1].id}
        bar = str(app.screen.query_one("#marks-bar", Label).render())
        assert "2 agents marked" in bar and "D drain" in bar
        save_screenshot(app, "main-marks")
        await pilot.press("D")
        assert isinstance(app.screen, ConfirmScreen)
        assert "Drain 2 agents (gen1, gen2)?" in app.screen.question
        await pilot.press("y")
        await wait_until_pilot(pilot, lambda: all(a.drained for a in app.agents), what="both drained")
        assert all(a["drained"] for a in agents_by_name(server).values())
        assert table.marks == set() and not app.screen.query_one("#marks-bar").display
        await wait_until_pilot(pilot, lambda: [table.row_cells(a.id)[0].text for a in lab] == ["drained"] * 2)  # type: ignore[index]
        # U on the selected agent only (no marks): one undrained
        await pilot.press("U", "y")
        await wait_until_pilot(pilot, lambda: sum(a.drained for a in app.agents) == 1, what="one undrained")


async def test_mark_containers_and_stop_them(server: ServerProcess) -> None:
    agents = fleet(server, "gen1")
    with server.client() as http:
        for name in ("shop", "cart"):
            body = {"name": name, "plan": PLAN, "provider": "lab", "containers": 2}
            assert http.post("/tests", json=body).status_code == 201
    assert len(run_launches(agents)) == 4
    beating = Heartbeats(agents)
    try:
        app = build_app(server)
        async with app.run_test(size=SIZE) as pilot:
            await loaded(app, pilot, agents=1, tests=2)
            await pilot.press("enter")  # the agents table's only row
            assert isinstance(app.screen, AgentScreen)
            table = app.screen.query_one(AgentContainersTable)
            await wait_until_pilot(pilot, lambda: table.row_count == 4, what="four containers on gen1")
            table.focus()
            await pilot.press("space", "down", "space", "space")
            assert len(table.marks) == 3
            marked = set(table.marks)
            await pilot.press("X")
            assert isinstance(app.screen, ConfirmScreen)
            assert app.screen.question == "Stop 3 containers of 2 tests? Their results so far are kept."
            await pilot.press("y")

            def asked() -> set[str]:
                with server.client() as http:
                    tests = http.get("/tests").json()
                return {c["id"] for t in tests for c in t["containers"] if c["state"] in ("stopping", "stopped")}

            await wait_until_pilot(pilot, lambda: asked() == marked, what="the three marked containers stopping")
            assert table.marks == set()
    finally:
        beating.end()


async def test_escape_clears_marks_and_read_only_refuses(server: ServerProcess, lab: list[FleetAgent]) -> None:
    app = build_app(server, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(app, pilot)
        table = app.screen.query_one(AgentsTable)
        await pilot.press("space")
        assert len(table.marks) == 1
        await pilot.press("D")
        assert not isinstance(app.screen, ConfirmScreen)
        assert any("read-only: draining agents is disabled" in n.message for n in app._notifications)
        await pilot.press("escape")
        assert table.marks == set()
    assert not any(a["drained"] for a in agents_by_name(server).values())


# --- The tests table gets the rows it needs (up to a cap), the agents table the rest.


@pytest.mark.parametrize(("size", "tests"), [((80, 24), 3), ((200, 60), 30)])
async def test_tables_fit(server: ServerProcess, size: tuple[int, int], tests: int) -> None:
    agents = fleet(server, *(f"gen{i}" for i in range(12)))
    with server.client() as http:
        for i in range(tests):
            body = {"name": f"t{i}", "plan": PLAN, "provider": "lab", "containers": 1}
            assert http.post("/tests", json=body).status_code == 201
    app = build_app(server)
    async with app.run_test(size=size) as pilot:
        await loaded(app, pilot, agents=12, tests=tests)
        screen = app.screen
        providers, table, tests_table = (screen.query_one(t) for t in (ProvidersTable, AgentsTable, TestsTable))
        await wait_until_pilot(pilot, lambda: tests_table.row_count == tests and table.row_count == 12)
        await pilot.pause()
        height = size[1]
        used = 1 + providers.size.height + 1 + table.size.height + 1 + tests_table.size.height + 1
        assert used == height, "every line of the screen is used"
        assert providers.size.height == 2
        if tests == 3:
            assert tests_table.size.height == 4, "three tests: their rows and the header, no more"
            assert table.size.height == height - 4 - 2 - 4
        else:
            # the agents need 13 lines of the 54: the tests get all theirs (31), the agents the rest
            assert tests_table.size.height == 31 and table.size.height == 54 - 31 >= 13
    for agent in agents:
        agent.close()


def test_the_tests_table_is_capped_when_agents_need_the_room() -> None:
    # 80x24, 1 provider, 50 agents, 30 tests: 18 lines below the providers; the tests get 2/5
    assert table_heights(24, 1, 50, 30) == (2, 7)
    assert table_heights(60, 1, 500, 30) == (2, 21)
    assert table_heights(24, 1, 50, 0) == (2, 2), "no test: the header and one line"
    assert table_heights(10, 9, 50, 30) == (5, 2), "a tiny terminal: still the header and a row"


# --- Bars, fleet states and test warnings, as the tables show them.


async def test_states_reported_by_the_server(server: ServerProcess) -> None:
    gen1, gen2 = fleet(server, "gen1", "gen2", machine_id="m-shared")
    (old,) = fleet(server, "old", provider="lab2", version="0.0.1")
    with server.client() as http:
        assert http.post(f"/agents/{gen1.id}/drain").status_code in (200, 204)
    gen2.beat(cpu=97.0, mem=42.0)
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(app, pilot, agents=3, tests=0)
        table = app.screen.query_one(AgentsTable)

        def cells(agent: FleetAgent) -> list[str]:
            row = table.row_cells(agent.id) or ()
            return [c.text for c in row]

        await wait_until_pilot(pilot, lambda: cells(gen1)[:1] == ["drained"], what="gen1 drained")
        assert cells(gen1)[1] == "gen1 (dup host)" and cells(gen2)[1] == "gen2 (dup host)"
        assert cells(old)[0] == "outdated" and (table.row_cells(old.id) or ())[7].style == "warning"
        cpu = (table.row_cells(gen2.id) or ())[4]
        assert cpu.text == "97.0" and cpu.bar == pytest.approx(0.97) and cpu.style == "warning"
    for agent in (gen1, gen2, old):
        agent.close()


def test_bars_saturation_and_test_warnings() -> None:
    host = HostSample(ts=0, cpu_percent=97.0, memory_percent=35.0)
    agent = Agent(id="a", name="gen-b", provider="p", location="paris", status="online", host=host,
                  docker=DockerInfo(available=True), saturated="CPU 97 % for 45 s", drained=True)  # fmt: skip
    row = agent_cells(agent, 10.0, 0.0)
    assert (row[0].text, row[0].style) == ("saturated", "warning")
    assert row[4].bar == pytest.approx(0.97) and row[5].bar == pytest.approx(0.35) and row[5].style is None
    assert agent_cells(agent.model_copy(update={"saturated": None}), 10.0, 0.0)[0].text == "drained"
    test = Test(id="t", name="shop", provider="p", image="i", state="finished", created_at=datetime.now(UTC),
                verdict="failed", warnings=["results may be skewed: gen-b saturated for 45 s (CPU 97 %)"],
                criteria=[CriterionResult(expr="p95<500ms", metric="p95", op="<", threshold=500,
                                          passed=False)])  # fmt: skip
    cell = check_cell(test)
    assert cell.style == "error" and cell.text.startswith("failed: p95<500ms · ⚠ 1: results may be skewed")
    passed = check_cell(test.model_copy(update={"verdict": "passed"}))
    assert passed.style == "warning" and passed.text.startswith("passed · ⚠ 1")
    assert check_cell(test.model_copy(update={"verdict": None, "warnings": []})).text == "-"
