"""What a new user's trial of the dashboard found, each driven by Pilot at 80x24 against a real
server and a real agent (and real Docker where a test must run): quitting with tests running,
failure reasons in full, the launch dialog at 80x24, read-only secrets, prompts that stay open,
the filter line, stale figures, newest tests first, palette actions, the audit table's width."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from textual.command import CommandList
from textual.widgets import Input

from octotui.tui.app import OctoApp
from octotui.tui.forms import parse_properties, placement_text
from octotui.tui.install import TOKEN_PLACEHOLDER
from octotui.tui.screens.audit import AuditScreen
from octotui.tui.screens.launch import LaunchScreen
from octotui.tui.screens.prompt import PromptScreen
from octotui.tui.screens.provider import ProviderScreen
from octotui.tui.screens.quit import QuitScreen
from octotui.tui.screens.test import TestScreen
from octotui.tui.widgets.charts import Chart
from octotui.tui.widgets.tables import AgentsTable, AuditTable, TestsTable
from tests.support.processes import AgentProcess, ServerProcess
from tests.support.tui import (
    MISSING_IMAGE,
    PLAN,
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


def get_test(server: ServerProcess, test_id: str) -> dict[str, Any]:
    with server.client() as http:
        return dict(http.get(f"/tests/{test_id}").raise_for_status().json())


async def app_exited(app: OctoApp, limit: float) -> None:
    deadline = time.monotonic() + limit
    while app.is_running:
        assert time.monotonic() < deadline, f"the app still runs after {limit} s"
        await asyncio.sleep(0.1)


# --- 1. quitting while tests run -----------------------------------------------------------------


@pytest.mark.docker
@pytest.mark.jmeter
@pytest.mark.xdist_group("jmeter")
async def test_quit_with_a_running_test_asks_then_stops_it(  # type: ignore[no-untyped-def]
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path, jmeter_image: str, http_target, docker_client
) -> None:
    test = long_test(server, agents, tmp_path, jmeter_image, http_target, "long")
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until_pilot(
            pilot, lambda: any(t.id == test["id"] and t.state == "running" for t in app.tests), timeout=90
        )
        await pilot.press("q")
        assert isinstance(app.screen, QuitScreen)
        question = text_of(app, "#quit-question")
        assert "1 test running (long)" in question and "[s] stop them and quit" in question
        assert "unattended" not in question  # not embedded: the agent is not ours
        await pilot.press("escape")
        assert not isinstance(app.screen, QuitScreen) and app.is_running
        await pilot.press("q", "s")
        await app_exited(app, 20)
    # the stop was sent and followed: the test and its container have stopped
    final = get_test(server, test["id"])
    assert final["state"] in ("stopping", "finished"), final["state"]
    wait_until(lambda: get_test(server, test["id"])["state"] == "finished", timeout=60, what="test finished")
    wait_until(
        lambda: not docker_client.containers.list(all=True, filters={"label": f"io.octotui.test={test['id']}"}),
        timeout=60,
        what="containers removed",
    )


@pytest.mark.docker
@pytest.mark.jmeter
@pytest.mark.xdist_group("jmeter")
async def test_quit_leaving_tests_running_and_embedded_wording(  # type: ignore[no-untyped-def]
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path, jmeter_image: str, http_target, docker_client
) -> None:
    test = long_test(server, agents, tmp_path, jmeter_image, http_target, "stay")
    try:
        app = build_app(server)
        app.embedded = True
        async with app.run_test(size=SIZE) as pilot:
            await wait_until_pilot(
                pilot, lambda: any(t.id == test["id"] and t.state != "pending" for t in app.tests), timeout=60
            )
            await pilot.press("q")
            assert isinstance(app.screen, QuitScreen)
            assert "local agent stops with the dashboard" in text_of(app, "#quit-question")
            assert "unattended until their duration ends" in text_of(app, "#quit-question")
            await pilot.press("l")
            await app_exited(app, 5)
        assert get_test(server, test["id"])["state"] in ("starting", "running")
    finally:
        with server.client() as http:
            http.post(f"/tests/{test['id']}/stop")
        wait_until(
            lambda: not docker_client.containers.list(all=True, filters={"label": f"io.octotui.test={test['id']}"}),
            timeout=60,
            what="containers removed",
        )


async def test_quit_without_running_tests_or_read_only_does_not_ask(server: ServerProcess) -> None:
    app = build_app(server, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until_pilot(pilot, lambda: app.connection.state == "ok")
        await pilot.press("q")
        await app_exited(app, 5)


# --- 2, 3, 10, 12. a failed launch from the dialog: reasons, charts, remembered values, order ----


@pytest.mark.docker
async def test_launch_dialog_fits_validates_remembers_and_failed_test_says_why(  # type: ignore[no-untyped-def]
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path, docker_client
) -> None:
    docker_lab(server, agents, tmp_path)
    older = create_test(server, name="older", image=MISSING_IMAGE)
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until_pilot(pilot, lambda: bool(app.providers) and bool(app.tests))
        await pilot.press("l")
        dialog = app.screen
        assert isinstance(dialog, LaunchScreen)
        # every label has its gap and says what it counts; the buttons are on screen at 80x24
        labels = [str(lbl.render()) for lbl in dialog.query("#launch-form .field Label")]
        assert "Users/container" in labels and "Duration (s)" in labels
        for button in ("#do-preview", "#do-launch", "#do-cancel"):
            region = dialog.query_one(button).region
            assert region.height == 1 and region.bottom <= SIZE[1] and region.right <= SIZE[0], (button, region)
        form = {"plan": str(PLAN), "name": "failing", "containers": "1", "users": "5", "image": MISSING_IMAGE}
        for field, value in form.items():
            dialog.query_one(f"#{field}", Input).value = value
        # ';'-joined properties are refused, with the reason
        dialog.query_one("#properties", Input).value = "a=1;b=2"
        await pilot.press("ctrl+r")
        assert "not ';'" in text_of(app, "#preview")
        dialog.query_one("#properties", Input).value = "nokey"
        await pilot.press("ctrl+r")
        assert "expected key=value, got 'nokey'" in text_of(app, "#preview")
        dialog.query_one("#duration", Input).value = "9999999"
        dialog.query_one("#properties", Input).value = "users=7, host=127.0.0.1"
        await pilot.press("ctrl+r")
        assert "Duration: at most 7 days" in text_of(app, "#preview")
        dialog.query_one("#duration", Input).value = "30"
        await pilot.press("ctrl+r")
        # a property that contradicts a field is the contract's to refuse: said in its words
        assert "Property users='7' contradicts users=5: set users in one place" in text_of(app, "#preview")
        dialog.query_one("#properties", Input).value = "users=5, host=127.0.0.1"
        await pilot.press("ctrl+r")
        await wait_until_pilot(pilot, lambda: "ctrl+l launches it" in text_of(app, "#preview"), what="the placement")
        preview = text_of(app, "#preview")
        assert "1 container on 1 agent of lab" in preview
        assert "1 container \N{MULTIPLICATION SIGN} 5 users = 5 users" in preview
        with server.client() as http:
            assert len(http.get("/tests").json()) == 1  # previews launch nothing
        await pilot.press("ctrl+l")
        await wait_until_pilot(pilot, lambda: not isinstance(app.screen, LaunchScreen), what="launched")

        # the newest test is first, under the cursor; End and Home jump
        table = app.screen.query_one(TestsTable)
        await wait_until_pilot(pilot, lambda: table.row_count == 2)
        newest = next(t.id for t in app.tests if t.name == "failing")
        assert table.row_keys == [newest, older["id"]]
        await pilot.press("t")
        assert table.selected_key == newest
        await pilot.press("end")
        assert table.selected_key == older["id"]
        await pilot.press("home")
        assert table.selected_key == newest

        # the next dialog starts from the last launch's values
        await pilot.press("l")
        assert isinstance(app.screen, LaunchScreen)
        values = {f: app.screen.query_one(f"#{f}", Input).value for f in ("plan", "users", "duration", "image")}
        assert values == {"plan": str(PLAN), "users": "5", "duration": "30", "image": MISSING_IMAGE}
        assert app.screen.query_one("#properties", Input).value == "users=5, host=127.0.0.1"
        await pilot.press("escape")

        # the failed test says why in full, the container's error is under its table
        await wait_until_pilot(
            pilot, lambda: next(t for t in app.tests if t.id == newest).state == "failed", timeout=60
        )
        await pilot.press("t", "enter")
        assert isinstance(app.screen, TestScreen)
        test = next(t for t in app.tests if t.id == newest)
        await wait_until_pilot(pilot, lambda: app.screen.query_one("#test-reason").display, what="the reason line")
        assert test.reason and test.reason.strip() in " ".join(text_of(app, "#test-reason").split())
        container = test.containers[0]
        assert container.error
        line = " ".join(text_of(app, "#container-line").split())
        assert container.error.strip().split()[0] in line and "failed" in line
        rate = app.screen.query_one("#rate-chart", Chart)
        assert rate.empty == "no data: the test failed before JMeter reported"
        assert "times: min" in text_of(app, "#test-title")


def test_properties_parsing_and_preview_text() -> None:
    assert parse_properties("a=1 b=2,c=3 , d=") == ({"a": "1", "b": "2", "c": "3", "d": ""}, None)
    assert parse_properties("") == ({}, None)
    assert "not ';'" in (parse_properties("a=1;b=2")[1] or "")
    assert "one '=' per pair" in (parse_properties("a=1=2")[1] or "")
    assert "set by the agent itself" in (parse_properties("summariser.name=x")[1] or "")  # the contract's rule
    from octotui.protocol import Placement, PlacementItem

    placement = Placement(
        provider="p",
        provider_name="lab",
        containers=2,
        items=[PlacementItem(agent="a", agent_name="box1", location="paris", containers=2)],
    )
    text = placement_text(placement, users=5)
    assert text.splitlines()[:3] == [
        "2 containers on 1 agent of lab",
        "load: 2 containers \N{MULTIPLICATION SIGN} 5 users = 10 users",
        "  box1 (paris): 2 containers",
    ]


# --- 4. read-only never shows a secret -----------------------------------------------------------


async def test_read_only_flag_with_an_admin_token_hides_the_provider_token(server: ServerProcess) -> None:
    provider = make_provider(server)
    app = build_app(server, read_only=True)  # the admin token, but --read-only
    # as if this dashboard had made it (embedded mode knows the local provider's token)
    app.actions.provider_tokens[provider["id"]] = provider["token"]
    async with app.run_test(size=SIZE) as pilot:
        await wait_until_pilot(pilot, lambda: bool(app.providers))
        await pilot.press("p", "i")
        assert isinstance(app.screen, ProviderScreen)
        commands = " ".join(line.command for line in app.screen.lines)
        assert provider["token"] not in commands and f"OCTOTUI_TOKEN={TOKEN_PLACEHOLDER} " in commands
        note = app.screen.query_one("#token-note")
        assert "Read-only mode" in str(note.render())
        assert note.region.height >= 2  # wrapped, not cut at 80 columns
        await pilot.press("c")
        assert provider["token"] not in app.clipboard


# --- 6, 7, 9. filter line, visible sort, stale figures ------------------------------------------


async def test_filter_line_sort_arrow_and_stale_figures(
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path
) -> None:
    provider = make_provider(server)
    start_agent(server, agents, tmp_path, provider["token"])
    found = wait_until(lambda: agent_id(server), timeout=30, what="agent registered")
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(AgentsTable)
        await wait_until_pilot(pilot, lambda: table.row_count == 1)
        bar = app.screen.query_one("#filter-bar")
        assert not bar.display
        await pilot.press("slash")
        assert bar.display and bar.region.height == 1 and "filter:" in text_of(app, "#filter-label")
        footer = app.screen.query_one("Footer")
        assert bar.region.bottom <= footer.region.y  # above the footer, not under it
        await pilot.press(*"box")
        await pilot.press("escape")
        assert not bar.display and app.screen.query_one("#filter", Input).value == ""

        for _ in range(9):  # cycle to the CPU% column: its arrow must show in its narrow header
            await pilot.press("o")
        assert table.sort_column == "cpu" and not table.sort_reverse
        label = str(table.columns[next(k for k in table.columns if k.value == "cpu")].label)
        assert label.endswith("▲") and len(label) <= 5
        assert table.sort_label() == "sorted by CPU% ▲"

        # the READ-ONLY badge and the state come first in the header
        status = app.screen.query_one("#status")
        assert [w.id for w in status.children][:2] == ["sb-readonly", "sb-state"]

        await wait_until_pilot(pilot, lambda: app.connection.state == "ok")
        server.stop()
        await wait_until_pilot(pilot, lambda: app.screen.has_class("-stale"), what="stale class")
        cells = table.row_cells(found)
        assert cells is not None and cells[6].text == "stale"
        assert "stale" in app.screen.query_one("#status").query_one("#sb-state").render().plain
        server.start()
        await wait_until_pilot(pilot, lambda: not app.screen.has_class("-stale"), timeout=40, what="fresh again")
        await wait_until_pilot(pilot, lambda: (table.row_cells(found) or [None] * 7)[6].text != "stale")


# --- 8. the audit table's last column takes the room left -----------------------------------------


@pytest.mark.parametrize("size", [(80, 24), (200, 50)])
async def test_audit_detail_column_takes_the_remaining_width(server: ServerProcess, size: tuple[int, int]) -> None:
    with server.client() as http:
        http.post("/providers", json={"name": "a-provider-with-a-rather-long-name"}).raise_for_status()
    app = build_app(server)
    async with app.run_test(size=size) as pilot:
        await wait_until_pilot(pilot, lambda: app.connection.state == "ok")
        await pilot.press("u")
        assert isinstance(app.screen, AuditScreen)
        table = app.screen.query_one(AuditTable)
        await wait_until_pilot(pilot, lambda: table.row_count >= 1)
        await pilot.pause(0.2)
        widths = sum(c.get_render_width(table) for c in table.columns.values())
        what = next(c for k, c in table.columns.items() if k.value == "what")
        assert widths <= size[0] and widths >= size[0] - 3, (widths, size)
        assert what.width >= (11 if size[0] == 80 else 100)
        line = " ".join(text_of(app, "#audit-line").split())
        assert "admin (admin) · provider.create" in line and "from 127.0.0.1" in line


# --- 11. actions in the command palette ---------------------------------------------------------


async def test_command_palette_offers_actions(server: ServerProcess) -> None:
    make_provider(server)
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until_pilot(pilot, lambda: bool(app.providers))
        titles = {c.title for c in app.get_system_commands(app.screen)}
        wanted = {"Launch a test", "Stop the selected test", "New provider", "Install lines", "Audit log"}
        assert wanted | {"Container distribution", "Help"} <= titles
        await pilot.press("ctrl+p", *"new provider")
        await wait_until_pilot(
            pilot, lambda: app.screen.query_one(CommandList).option_count > 0, what="the palette's matches"
        )
        await pilot.press("enter")
        await wait_until_pilot(pilot, lambda: isinstance(app.screen, PromptScreen), what="the new-provider prompt")
        await pilot.press("escape")
        app.action_install_lines()
        await pilot.pause()
        assert isinstance(app.screen, ProviderScreen)
    ro = build_app(server, read_only=True)
    async with ro.run_test(size=SIZE) as pilot:
        await wait_until_pilot(pilot, lambda: ro.read_only)
        titles = {c.title for c in ro.get_system_commands(ro.screen)}
        assert not {"Launch a test", "Stop the selected test", "New provider"} & titles
