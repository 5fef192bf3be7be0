"""Read-only monitoring, the install dialog, provider management and the audit screen, driven by
Pilot at 80x24 against a real server process (and a real agent where a location matters)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from textual.widgets import Input, OptionList

from octotui.tui.app import OctoApp
from octotui.tui.install import TOKEN_PLACEHOLDER
from octotui.tui.screens.audit import AuditScreen
from octotui.tui.screens.confirm import ConfirmScreen
from octotui.tui.screens.prompt import PromptScreen
from octotui.tui.screens.provider import ProviderScreen
from octotui.tui.widgets.status_bar import StatusBar
from octotui.tui.widgets.tables import AgentsTable, AuditTable, ProvidersTable
from tests.support.faultkit import PLAN
from tests.support.processes import AgentProcess, ServerProcess
from tests.support.tui import SIZE, build_app, make_provider, start_agent
from tests.support.tui import agent_id as find_agent
from tests.support.waiting import wait_until, wait_until_pilot


def read_only_token(server: ServerProcess, name: str = "watcher") -> str:
    with server.client() as http:
        response = http.post("/tokens", json={"name": name, "role": "read-only"})
        response.raise_for_status()
        return str(response.json()["token"])


def providers_by_name(server: ServerProcess) -> dict[str, dict[str, object]]:
    with server.client() as http:
        return {p["name"]: p for p in http.get("/providers").raise_for_status().json()}


def registers(server: ServerProcess, token: str, name: str = "probe") -> int:
    """The status of a registration with ``token``: 200 when it is the provider's token."""
    with httpx.Client(base_url=f"{server.url}/api/v1", timeout=5) as http:
        body = {"name": name, "location": "paris"}
        return http.post("/agents/register", json=body, headers={"Authorization": f"Bearer {token}"}).status_code


def notes(app: OctoApp) -> list[str]:
    return [f"{n.title}: {n.message}" for n in app._notifications]


@pytest.fixture
def lab(server: ServerProcess, agents: list[AgentProcess], tmp_path: Path) -> Iterator[dict[str, str]]:
    """Provider ``lab`` with agent ``box1`` in ``paris``, registered."""
    provider = make_provider(server)
    start_agent(server, agents, tmp_path, provider["token"])
    wait_until(lambda: find_agent(server), timeout=30, what="agent box1 registered")
    yield provider


async def test_read_only_token_hides_every_change_and_a_forced_one_shows_the_403(
    server: ServerProcess, lab: dict[str, str]
) -> None:
    token = read_only_token(server)
    app = build_app(server, token=token)  # no --read-only: the role comes from /info
    async with app.run_test(size=SIZE) as pilot:
        await wait_until_pilot(pilot, lambda: app.read_only, what="read-only role from /info")
        badge = app.screen.query_one(StatusBar).query_one("#sb-readonly")
        assert badge.display and "READ-ONLY" in str(badge.render())
        table = app.screen.query_one(ProvidersTable)
        await wait_until_pilot(pilot, lambda: table.row_count == 1, what="the provider row")
        await pilot.press("p")
        keys = set(app.active_bindings)
        assert not {"l", "s", "n", "r", "delete", "k"} & keys
        assert {"i", "u", "d", "slash", "q"} <= keys
        for key in ("n", "r", "delete", "k", "l"):
            await pilot.press(key)
            assert not isinstance(app.screen, PromptScreen | ConfirmScreen)
        # The server enforces the role whatever the client does: force a change past the UI.
        app.actions.create_provider("sneaky")
        await wait_until_pilot(
            pilot, lambda: any("Cannot create provider sneaky" in n for n in notes(app)), what="refusal"
        )
        refusal = next(n for n in notes(app) if "sneaky" in n)
        assert "read-only token" in refusal and "refused" in refusal
        assert "sneaky" not in providers_by_name(server)
        # still live: a new provider made by an admin shows up
        with server.client() as http:
            http.post("/providers", json={"name": "later"}).raise_for_status()
        await wait_until_pilot(pilot, lambda: table.row_count == 2, what="live update in read-only mode")


async def test_install_dialog_lines_location_and_copy(server: ServerProcess, lab: dict[str, str]) -> None:
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(ProvidersTable)
        await wait_until_pilot(
            pilot, lambda: table.row_count == 1 and "paris" in (table.row_cells(lab["id"]) or ())[3].text
        )
        await pilot.press("p", "i")
        assert isinstance(app.screen, ProviderScreen)
        dialog = app.screen
        # Made by another client: the server keeps its token hashed, so this dashboard cannot show it.
        assert lab["token"] not in " ".join(line.command for line in dialog.lines)
        assert f"OCTOTUI_TOKEN={TOKEN_PLACEHOLDER} " in dialog.lines[1].command
        assert "k gives this provider a new one" in str(dialog.query_one("#token-note").render())
        await pilot.press("k")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_until_pilot(pilot, lambda: app.screen is dialog and TOKEN_PLACEHOLDER not in dialog.lines[1].command)
        token = app.actions.provider_tokens[lab["id"]]
        assert token != lab["token"] and "keeps only a hash" in str(dialog.query_one("#token-note").render())
        assert registers(server, lab["token"]) == 401, "the old token registers no more"
        native, docker = dialog.lines[1].command, dialog.lines[2].command
        assert dialog.lines[0].command == "pip install octotui"
        # the token in the environment: `ps` shows an agent's arguments to every user
        assert native == f"OCTOTUI_TOKEN={token} octotui-agent --server={server.url} --location=paris"
        assert docker.startswith("docker run -d --restart unless-stopped --name octotui-agent --network host")
        assert "-v /var/run/docker.sock:/var/run/docker.sock" in docker
        assert f"-e OCTOTUI_SERVER={server.url} -e OCTOTUI_TOKEN={token} -e OCTOTUI_LOCATION=paris" in docker
        assert docker.endswith(" octotui-agent:latest")

        assert dialog.query_one(OptionList).highlighted == 1
        await pilot.press("c")
        assert app.clipboard == native
        assert any("Copied the native, step 2 line" in n for n in notes(app))
        await pilot.press("down", "c")
        assert app.clipboard == docker

        await pilot.press("tab")
        location = dialog.query_one("#location", Input)
        assert location.has_focus
        location.value = ""
        await pilot.press(*"us-east", "enter")
        assert dialog.query_one(OptionList).has_focus
        await pilot.press("c")
        assert app.clipboard.endswith("-e OCTOTUI_LOCATION=us-east octotui-agent:latest")

        location.value = "bad place!"
        await pilot.pause()
        assert "letters, digits" in str(dialog.query_one("#location-error").render())
        before = app.clipboard
        await pilot.press("c")
        assert app.clipboard == before
        assert any("Location:" in n for n in notes(app))
        await pilot.press("escape")
        assert not isinstance(app.screen, ProviderScreen)


async def test_install_dialog_without_the_token_for_read_only(server: ServerProcess, lab: dict[str, str]) -> None:
    app = build_app(server, token=read_only_token(server))
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(ProvidersTable)
        await wait_until_pilot(pilot, lambda: table.row_count == 1 and app.read_only)
        await pilot.press("p", "enter")
        assert isinstance(app.screen, ProviderScreen)
        commands = " ".join(line.command for line in app.screen.lines)
        assert lab["token"] not in commands and f"OCTOTUI_TOKEN={TOKEN_PLACEHOLDER} " in commands
        assert "admin token" in str(app.screen.query_one("#token-note").render())
        assert "k new token" not in str(app.screen.query_one("#install-keys").render())
        await pilot.press("k")
        assert isinstance(app.screen, ProviderScreen), "read-only: no rotation"


async def test_provider_new_rename_rotate_delete_through_the_ui(server: ServerProcess) -> None:
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(ProvidersTable)
        await wait_until_pilot(pilot, lambda: app.connection.state == "ok")
        await pilot.press("p", "n")
        assert isinstance(app.screen, PromptScreen)
        await pilot.press(*"bad/name", "enter")
        assert isinstance(app.screen, PromptScreen)  # refused locally, nothing sent
        assert "letters, digits" in str(app.screen.query_one("#prompt-error").render())
        app.screen.query_one(Input).value = ""
        await pilot.press(*"edge", "enter")
        await wait_until_pilot(pilot, lambda: "edge" in providers_by_name(server), what="provider created")
        await wait_until_pilot(pilot, lambda: table.row_count == 1)
        edge = providers_by_name(server)["edge"]
        first = app.actions.provider_tokens[str(edge["id"])]  # the creation's answer, kept for the install lines
        assert edge["token"] == "" and registers(server, first) == 200

        await pilot.press("r")
        assert isinstance(app.screen, PromptScreen)
        app.screen.query_one(Input).value = ""
        await pilot.press(*"edge-2", "enter")
        await wait_until_pilot(pilot, lambda: "edge-2" in providers_by_name(server), what="renamed")

        await pilot.press("k")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_until_pilot(pilot, lambda: app.actions.provider_tokens[str(edge["id"])] != first, what="rotated")
        rotated = app.actions.provider_tokens[str(edge["id"])]
        assert registers(server, first) == 401 and registers(server, rotated) == 200

        # a duplicate name is the server's to refuse: the prompt stays open with its reason, so
        # the next keys are typed into it, never taken as hotkeys (d = delete, k = rotate...)
        await pilot.press("n", *"edge-2", "enter")
        prompt = app.screen
        assert isinstance(prompt, PromptScreen)
        error = prompt.query_one("#prompt-error")
        await wait_until_pilot(pilot, lambda: "✗" in str(error.render()), what="the server's refusal inside the prompt")
        assert "edge-2" in str(error.render()) or "exists" in str(error.render())
        await pilot.press("k", "d")
        assert app.screen is prompt and prompt.query_one(Input).value == "edge-2kd"
        assert list(providers_by_name(server)) == ["edge-2"]
        prompt.query_one(Input).value = ""
        await pilot.press(*"edge-3", "enter")
        await wait_until_pilot(pilot, lambda: "edge-3" in providers_by_name(server), what="created after the refusal")
        await wait_until_pilot(
            pilot, lambda: not isinstance(app.screen, PromptScreen), what="the prompt closes on success"
        )
        await wait_until_pilot(pilot, lambda: table.row_count == 2)
        await pilot.press("down")
        await wait_until_pilot(
            pilot, lambda: table.selected_key == providers_by_name(server)["edge-3"]["id"], what="edge-3 selected"
        )
        await pilot.press("delete", "y")
        await wait_until_pilot(pilot, lambda: "edge-3" not in providers_by_name(server), what="edge-3 deleted")
        await wait_until_pilot(pilot, lambda: table.row_count == 1)

        await pilot.press("delete")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert "edge-2" in providers_by_name(server)
        await pilot.press("delete", "y")
        await wait_until_pilot(pilot, lambda: not providers_by_name(server), what="deleted")
        await wait_until_pilot(pilot, lambda: table.row_count == 0)


async def test_audit_screen_lists_changes_live(server: ServerProcess) -> None:
    with server.client() as http:
        http.post("/providers", json={"name": "first"}).raise_for_status()
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until_pilot(pilot, lambda: app.connection.state == "ok")
        await pilot.press("u")
        assert isinstance(app.screen, AuditScreen)
        table = app.screen.query_one(AuditTable)
        await wait_until_pilot(pilot, lambda: table.row_count >= 1, what="audit rows")
        first = table.row_cells(table.row_keys[0])
        assert first is not None
        assert first[1].text == "admin" and first[2].text == "admin" and first[3].text == "provider.create"
        assert first[4].text == "127.0.0.1"
        with server.client() as http:
            http.post("/providers", json={"name": "second"}).raise_for_status()
        await wait_until_pilot(pilot, lambda: table.row_count >= 2, what="a new entry, live")
        newest = table.row_cells(table.row_keys[0])
        assert newest is not None and "second" in newest[5].text
        await pilot.press("escape")
        assert not isinstance(app.screen, AuditScreen)
        assert app.poller.audit is False


async def test_an_agent_that_is_not_online_can_be_removed(
    server: ServerProcess, agents: list[AgentProcess], lab: dict[str, str]
) -> None:
    box1 = find_agent(server)
    assert box1 is not None
    app = build_app(server)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(AgentsTable)
        await wait_until_pilot(pilot, lambda: (table.row_cells(box1) or [None])[0] is not None)
        await wait_until_pilot(pilot, lambda: table.row_cells(box1)[0].text == "online", what="box1 online")  # type: ignore[index]
        await pilot.press("a", "delete")
        assert not isinstance(app.screen, ConfirmScreen), "an online agent would only register again"
        assert any("box1 is online: stop its agent first" in n for n in notes(app))
        assert find_agent(server) == box1

        agents[0].stop()
        await wait_until_pilot(pilot, lambda: table.row_cells(box1)[0].text != "online", 20, what="box1 not online")  # type: ignore[index]
        await pilot.press("delete")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert find_agent(server) == box1, "no: nothing removed"
        await pilot.press("delete", "y")
        await wait_until_pilot(pilot, lambda: find_agent(server) is None, what="box1 removed on the server")
        await wait_until_pilot(pilot, lambda: table.row_count == 0, what="box1 gone from the table")
        assert any("Agent box1 removed" in n for n in notes(app))

    read_only = build_app(server, read_only=True)
    async with read_only.run_test(size=SIZE) as pilot:
        await wait_until_pilot(pilot, lambda: read_only.connection.state == "ok")
        await pilot.press("a", "delete")
        assert not isinstance(read_only.screen, ConfirmScreen)
        assert any("read-only: removing agents is disabled" in n for n in notes(read_only))


async def test_a_busy_agent_deleted_with_force_reads_retiring_until_its_results_are_in(server: ServerProcess) -> None:
    """Forced deletion of an agent running a container keeps it (retiring) until that container has
    ended and handed in its results; the dashboard says so instead of showing it online and idle.
    The agent speaks the wire protocol, so the test controls when its container ends."""
    token = make_provider(server)["token"]
    with server.client() as http:
        reg = http.post("/agents/register", json={"name": "busy", "location": "paris"}, headers=_bearer(token))
        agent, auth = reg.json()["agent_id"], _bearer(reg.json()["agent_token"])

        def beat(*reports: dict[str, object]) -> dict[str, Any]:
            host = {"ts": time.time(), "cpu_percent": 1.0, "memory_percent": 1.0, "memory_total": 2**33}
            body = {"host": host, "docker": {"available": True, "version": "28"}, "containers": list(reports)}
            answer = http.post(f"/agents/{agent}/heartbeat", json=body, headers=auth)
            assert answer.status_code == 200, answer.text
            return dict(answer.json())

        beat()
        made = http.post("/tests", json={"name": "t", "plan": PLAN, "provider": "lab", "containers": 1})
        assert made.status_code == 201, made.text
        (cmd,) = http.get(f"/agents/{agent}/commands", params={"timeout": 0}, headers=auth).json()
        http.post(f"/agents/{agent}/commands/{cmd['id']}/ack", json={"ok": True}, headers=auth)
        running = {"container_id": cmd["container_id"], "test_id": cmd["test_id"], "state": "running"}
        beat(running)
        refused = http.delete(f"/agents/{agent}")
        assert refused.status_code == 409 and "force=true" in refused.json()["detail"]
        assert http.delete(f"/agents/{agent}", params={"force": "true"}).status_code == 202
        app = build_app(server)
        async with app.run_test(size=SIZE) as pilot:
            table = app.screen.query_one(AgentsTable)
            await wait_until_pilot(
                pilot, lambda: (table.row_cells(agent) or [None])[0] is not None, what="the agent listed"
            )
            await wait_until_pilot(pilot, lambda: table.row_cells(agent)[0].text == "retiring", what="retiring")  # type: ignore[index]
            assert cmd["container_id"] in beat(running)["stop"], "its container is told to stop"
            final = {"samples": 10, "errors": 0, "avg_ms": 5.0, "min_ms": 1.0, "max_ms": 9.0}
            beat({**running, "state": "finished", "exit_code": 0, "final": final})
            await wait_until_pilot(
                pilot, lambda: table.row_cells(agent) is None, what="the agent gone once its results are in"
            )
        ended = http.get(f"/tests/{cmd['test_id']}").json()
        assert ended["state"] == "finished" and ended["results"]["samples"] == 10


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
