"""The dashboard driven by Pilot at 80x24 against a real server process and a real agent process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rich.color import ColorSystem
from textual.color import Color
from textual.widgets import Button, Static

from octotui.tui.forms import check_plan_path
from octotui.tui.screens.agent import AgentScreen
from octotui.tui.screens.launch import LaunchScreen
from octotui.tui.screens.test import TestScreen
from octotui.tui.widgets.charts import Chart, CoreBars
from octotui.tui.widgets.status_bar import StatusBar
from octotui.tui.widgets.tables import AgentsTable, ProvidersTable
from tests.support.processes import AgentProcess, ServerProcess
from tests.support.tui import SIZE, agent_id, build_app, make_provider, start_agent
from tests.support.waiting import wait_until_pilot
from tests.support.wireagent import running_test


@pytest.fixture
def live(server: ServerProcess, agents: list[AgentProcess], tmp_path: Path) -> Iterator[str]:
    """A provider ``lab`` with one agent ``box1`` at location ``paris``; yields the agent id once online."""
    provider = make_provider(server)
    start_agent(server, agents, tmp_path, provider["token"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = agent_id(server)
        if found:
            yield found
            return
        time.sleep(0.2)
    raise AssertionError(f"agent never registered; its log:\n{agents[0].log()[-2000:]}")


async def test_agent_appears_online_with_figures(server: ServerProcess, live: str) -> None:
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(AgentsTable)

        def online_with_cpu() -> bool:
            cells = table.row_cells(live)
            return cells is not None and cells[0].text == "online" and cells[4].text != "-"

        await wait_until_pilot(pilot, online_with_cpu, what="box1 online with a CPU figure")
        cells = table.row_cells(live)
        assert cells is not None
        assert [c.text for c in cells[1:4]] == ["box1", "lab", "paris"]
        assert cells[0].style == "success"
        assert 0.0 <= float(cells[4].text) <= 100.0 and 0.0 < float(cells[5].text) <= 100.0
        assert cells[7].text == "0.1.0"
        providers = app.screen.query_one(ProvidersTable)
        await wait_until_pilot(pilot, lambda: (providers.row_cells(providers.row_keys[0]) or ())[2].text == "1")
        status = app.screen.query_one(StatusBar)
        assert status.state_text()[0] == "● live"
        assert "late>3s off>6s" in str(status.query_one("#sb-thresholds").render())


async def test_filter_and_sort(server: ServerProcess, live: str) -> None:
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(AgentsTable)
        await wait_until_pilot(pilot, lambda: table.row_count == 1, what="the agent row")
        await pilot.press("slash", *"nomatch")
        await wait_until_pilot(pilot, lambda: table.row_count == 0, what="filter hiding the agent")
        await pilot.press("escape")
        await wait_until_pilot(pilot, lambda: table.row_count == 1, what="filter cleared")
        await pilot.press("slash", *"PARIS", "enter")
        assert table.row_count == 1 and table.has_focus
        await pilot.press("o")
        assert table.sort_column == "status" and not table.sort_reverse
        await pilot.press("o")
        assert table.sort_column == "status" and table.sort_reverse


async def test_agent_detail_shows_live_charts(server: ServerProcess, live: str) -> None:
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(AgentsTable)
        await wait_until_pilot(pilot, lambda: table.row_count == 1, what="the agent row")
        await pilot.press("enter")
        assert isinstance(app.screen, AgentScreen)
        cpu = app.screen.query_one("#cpu-chart", Chart)
        await wait_until_pilot(pilot, lambda: len(cpu.values) >= 2, what="two CPU samples in the chart")
        assert app.screen.query_one("#mem-chart", Chart).values
        assert app.screen.query_one(CoreBars).cores
        figures = str(app.screen.query_one("#figures").render())
        assert "mem" in figures and "load" in figures and "docker" in figures
        count = len(cpu.values)
        await wait_until_pilot(pilot, lambda: len(cpu.values) > count, what="the chart growing live")
        await pilot.press("escape")
        assert not isinstance(app.screen, AgentScreen)
        assert app.poller.agent_id is None


async def test_server_lost_then_recovered(server: ServerProcess, live: str) -> None:
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        status = app.screen.query_one(StatusBar)
        await wait_until_pilot(pilot, lambda: app.connection.state == "ok", what="first poll")
        server.stop()
        await wait_until_pilot(pilot, lambda: "unreachable" in status.state_text()[0], what="unreachable shown")
        assert "retrying" in status.state_text()[0]
        assert app.is_running
        server.start()
        await wait_until_pilot(pilot, lambda: status.state_text()[0] == "● live", timeout=40, what="recovery")
        table = app.screen.query_one(AgentsTable)
        await wait_until_pilot(pilot, lambda: (table.row_cells(live) or [None])[0] is not None)


async def test_read_only_hides_actions(server: ServerProcess, live: str) -> None:
    app = build_app(server, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until_pilot(pilot, lambda: app.connection.state == "ok", what="first poll")
        keys = set(app.active_bindings)
        assert "l" not in keys and "s" not in keys
        assert "q" in keys and "slash" in keys
        await pilot.press("l")
        assert not isinstance(app.screen, LaunchScreen)
        assert app.screen.query_one(StatusBar).query_one("#sb-readonly").display


async def test_read_write_shows_actions(server: ServerProcess) -> None:
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until_pilot(pilot, lambda: app.connection.state == "ok", what="first poll")
        assert {"l", "s", "d"} <= set(app.active_bindings)
        assert not app.screen.query_one(StatusBar).query_one("#sb-readonly").display


async def test_launch_dialog_validates_plan_path(server: ServerProcess, tmp_path: Path) -> None:
    make_provider(server)
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until_pilot(pilot, lambda: bool(app.providers), what="providers")
        await pilot.press("l")
        assert isinstance(app.screen, LaunchScreen)
        missing = tmp_path / "missing.jmx"
        await pilot.press(*str(missing))
        status = app.screen.query_one("#plan-status")
        assert f"no such file: {missing}" in str(status.render())
        await pilot.press("enter")
        assert f"Plan file: no such file: {missing}" in str(app.screen.query_one("#preview").render())
        assert app.screen.query_one("#do-launch").disabled
        await pilot.press("escape")
        assert not isinstance(app.screen, LaunchScreen)
    with server.client() as http:
        assert http.get("/tests").json() == []


def test_plan_path_checks(tmp_path: Path) -> None:
    assert check_plan_path("") == "type the path of a JMeter plan (.jmx)"
    assert check_plan_path(str(tmp_path)) == f"{tmp_path} is a directory, not a plan file"
    empty = tmp_path / "empty.jmx"
    empty.write_text("")
    assert check_plan_path(str(empty)) == f"{empty} is empty"
    big = tmp_path / "big.jmx"
    big.write_text("x" * 100)
    assert check_plan_path(str(big), max_bytes=10) == f"{big} is 100 bytes; the server accepts at most 10 bytes"
    assert check_plan_path(str(big)) is None


async def test_server_error_of_a_preview_is_shown(server: ServerProcess, live: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jmx"
    bad.write_text("<jmeterTestPlan><unclosed></jmeterTestPlan>")
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until_pilot(pilot, lambda: bool(app.providers), what="providers")
        await pilot.press("l")
        await pilot.press(*str(bad), "enter")
        preview = app.screen.query_one("#preview")
        await wait_until_pilot(pilot, lambda: "✗" in str(preview.render()), what="the server's refusal")
        assert "plan" in str(preview.render()).lower()
        assert app.screen.query_one("#do-launch").disabled
    with server.client() as http:
        assert http.get("/tests").json() == []


async def test_wrong_token_is_shown_not_fatal(server: ServerProcess) -> None:
    app = build_app(server, token="wrong-token")
    async with app.run_test(size=SIZE) as pilot:
        status = app.screen.query_one(StatusBar)
        await wait_until_pilot(pilot, lambda: app.connection.state == "refused", what="refusal shown")
        assert status.state_text()[0].startswith("error: ")
        assert app.is_running


def test_server_url_health(server: ServerProcess) -> None:
    assert httpx.get(f"{server.url}/api/v1/health").json()["status"] == "ok"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--server", "http://127.0.0.1:1"], "--server needs --token"),
        (["--server", "ftp://x", "--token", "t"], "not an http(s) URL"),
        (["--refresh", "0"], "must be > 0"),
        (["--ca-bundle", "/nonexistent/ca.pem"], "no such file"),
    ],
)
def test_cli_refuses_bad_settings(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    from octotui.tui.cli import parse

    with pytest.raises(SystemExit) as exc:
        parse(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[dashboard]\nrefesh = 2\n", "unknown setting 'refesh' in [dashboard]"),
        ("[dashboard]\nrefresh = 0\n", "[dashboard] refresh: must be > 0"),
        ("[dashboard]\nrefresh = 'fast'\n", "[dashboard] refresh: could not convert"),
        ("[dashboard]\nread_only = 'yes'\n", "read_only: expected true or false"),
        ("[dashboard]\nserver = ['a']\n", "server: expected a string or a number"),
        ("dashboard = 3\n", "[dashboard] must be a table"),
        ("[dashboard\n", "cannot read config file"),
    ],
)
def test_cli_refuses_a_bad_config_file(
    text: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from octotui.tui.cli import parse

    config = tmp_path / "config.toml"
    config.write_text(text)
    monkeypatch.setenv("OCTOTUI_CONFIG", str(config))
    with pytest.raises(SystemExit) as exc:
        parse([])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_config_file_applies_and_a_missing_named_one_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from octotui.tui.cli import parse

    config = tmp_path / "config.toml"
    config.write_text("[dashboard]\nrefresh = 2\nread_only = true\n[server]\nport = 9000\n")
    monkeypatch.setenv("OCTOTUI_CONFIG", str(config))
    settings = parse([])
    assert settings.refresh == 2.0 and settings.read_only is True
    assert parse(["--refresh", "3"]).refresh == 3.0, "a flag wins over the file"
    monkeypatch.setenv("OCTOTUI_CONFIG", str(tmp_path / "nowhere.toml"))
    with pytest.raises(SystemExit):
        parse([])
    assert "OCTOTUI_CONFIG names" in capsys.readouterr().err


def test_cli_embedded_bad_data_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from octotui.tui.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["--data-dir", str(blocker / "data")]) == 1
    assert "as the data directory" in capsys.readouterr().err


async def test_same_named_agents_are_two_rows_flagged(
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path
) -> None:
    """Two machines left at the default name (one host name) are two agents, each flagged, never one."""
    token = make_provider(server)["token"]
    for state in ("state-a", "state-b"):
        agents.append(AgentProcess(server.url, token, tmp_path / state, "paris", "box1", "--interval", "1").start())
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(AgentsTable)

        def flagged() -> list[str]:
            names = [cells[1].text for key in table.row_keys if (cells := table.row_cells(key))]
            # both agents run here: one machine id as well as one name
            return names if len(names) == 2 and all(n == "box1 (dup name+host)" for n in names) else []

        await wait_until_pilot(pilot, flagged, what="two rows named 'box1 (dup name+host)'")


async def test_agent_screen_reads_a_containers_whole_error_and_opens_its_test(server: ServerProcess) -> None:
    # At 80 columns the table cuts the error ("pull of justb4/jmete"): the line under it has it
    # all, and enter opens the container's test.
    agent, report = running_test(server, name="shop")
    error = 'pull of justb4/jmeter:5.5 failed: Get "https://registry-1.docker.io/v2/": no such host'
    agent.beat({**report, "state": "failed", "error": error})
    app = build_app(server)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_until_pilot(pilot, lambda: bool(app.tests) and app.tests[0].state == "failed", what="failed")
            await app.push_screen(AgentScreen(agent.id))
            line = app.screen.query_one("#agent-container-line", Static)
            await wait_until_pilot(pilot, lambda: error in str(line.render()), what="the whole error")
            assert str(line.render()).startswith("shop #0 · failed: pull of")
            await pilot.press("enter")
            assert isinstance(app.screen, TestScreen) and app.screen.test_id == app.tests[0].id
    finally:
        agent.close()


async def test_a_disabled_launch_button_reads_in_16_colours(server: ServerProcess) -> None:
    # "Launch ^l" before a preview read grey on grey once a 16-colour terminal rounded it.
    make_provider(server)
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until_pilot(pilot, lambda: bool(app.providers), what="providers")
        await pilot.press("l")
        button = app.screen.query_one("#do-launch", Button)
        assert button.disabled
        style = button.rich_style
        assert style.color is not None and style.bgcolor is not None
        bg = Color.from_rich_color(style.bgcolor)
        # As painted: the text blended onto the background at the button's text opacity.
        fg = bg.blend(Color.from_rich_color(style.color), button.styles.text_opacity)
        fg16, bg16 = (c.rich_color.downgrade(ColorSystem.STANDARD).number for c in (fg, bg))
        assert fg16 != bg16, (fg, bg)
