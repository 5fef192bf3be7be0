"""Clients of several server replicas (issue 14 parts 3 and 5): the agent's and the dashboard's
``--server URL,URL`` fail over and come back, and HAProxy (deploy/haproxy.cfg) in front of two
replicas on one PostgreSQL carries agents and operators through a replica killed, a rolling
restart and PostgreSQL stopped for 10 s. Real server, agent, PostgreSQL and HAProxy processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

import agent.link
import octotui.client
from agent.link import ServerLink
from agent.settings import parse_settings
from octotui.client import Client, ServerUnreachable
from octotui.config import connection_problem
from octotui.protocol import RegisterRequest
from tests.support.haproxy import HAProxy
from tests.support.processes import AgentProcess, ServerProcess, free_port
from tests.support.waiting import wait_until, wait_until_async
from tests.support.wire import bearer

FAST = ("--heartbeat-interval", "1", "--late-after", "3", "--offline-after", "6")


@contextlib.contextmanager
def _replicas(tmp_path: Path, dsn: str, count: int = 2, start: bool = True) -> Iterator[list[ServerProcess]]:
    """``count`` server processes on one database (a, b…), their ports chosen now; stopped after."""
    servers = [ServerProcess(tmp_path / "abc"[i], "--database", dsn, *FAST) for i in range(count)]
    try:
        for server in servers if start else ():
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def _provider(server: ServerProcess | HAProxy, name: str = "lab") -> str:
    with _admin(server) as http:
        return str(http.post("/providers", json={"name": name}).raise_for_status().json()["token"])


def _admin(where: ServerProcess | HAProxy) -> httpx.Client:
    return httpx.Client(base_url=where.url + "/api/v1", headers=bearer("test-admin-token"), timeout=10)


def _seen(answer: dict[str, Any]) -> float:
    return datetime.fromisoformat(answer["last_seen"]).timestamp() if answer.get("last_seen") else 0.0


# --- the agent's --server URL,URL ------------------------------------------------------------------


def test_an_agent_given_two_servers_goes_on_through_the_second_when_the_first_is_killed(
    tmp_path: Path, pg_database: str, agents: list[AgentProcess]
) -> None:
    with _replicas(tmp_path, pg_database, start=False) as (a, b):
        a.start()
        state = tmp_path / "agent-state"
        proc = AgentProcess(f"{a.url},{b.url}", _provider(a), state, "local", "gen1")
        agents.append(proc.start())
        with a.client() as http:
            wait_until(lambda: [x["status"] for x in http.get("/agents").json()] == ["online"], timeout=30,
                       what=f"agent online through the first server (log {proc.log_path})")  # fmt: skip
        agent_id = json.loads((state / "identity.json").read_text())["agent_id"]
        b.start()  # after the registration: it reads it from the database
        killed = time.time()
        a.stop(signal.SIGKILL)
        with b.client() as http:

            def beating_through_b() -> bool:
                answer = http.get(f"/agents/{agent_id}").json()
                return answer["status"] == "online" and _seen(answer) > killed

            wait_until(beating_through_b, timeout=15, what=f"heartbeats through {b.url} (log {proc.log_path})")
            assert [x["id"] for x in http.get("/agents").json()] == [agent_id], "one identity, no new registration"
        assert json.loads((state / "identity.json").read_text())["agent_id"] == agent_id
        assert f"going on with {b.url}" in proc.log(), proc.log()[-2000:]
        assert proc.proc is not None and proc.proc.poll() is None, "the agent runs on"


def test_the_agent_link_registers_through_the_second_server_and_comes_back_to_the_first_once_healthy(
    tmp_path: Path, server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent.link, "RETURN_PROBE", 0.2)
    first = ServerProcess(tmp_path / "first", *FAST, port=free_port())  # not started: nothing listens there
    token = _provider(server)
    settings = parse_settings(["--server", f"{first.url},{server.url}", "--state-dir", str(tmp_path / "s")], env={})

    async def scenario() -> None:
        link = ServerLink(settings)
        try:
            answer = await link.register(token, RegisterRequest(name="gen1", location="paris"))
            assert link.server == server.url and answer.agent_id
            first.start()
            await wait_until_async(lambda: _is(link.server, first.url), timeout=15, what="back to the first server")
        finally:
            await link.aclose()

    try:
        asyncio.run(scenario())
    finally:
        first.stop()


async def _is(value: str, expected: str) -> bool:
    return value == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("http://127.0.0.1:1,,http://127.0.0.1:2", "an empty URL"),
        ("http://127.0.0.1:1,ftp://127.0.0.1:2", "not an http(s) URL: 'ftp://127.0.0.1:2'"),
        ("http://127.0.0.1:1,http://127.0.0.1:1/", "a URL given twice"),
        (",".join(f"http://127.0.0.1:{p}" for p in range(1, 18)), "at most 16 URLs, got 17"),
        ("http://127.0.0.1:99999", "not an http(s) URL"),
    ],
)
def test_a_bad_server_list_is_refused_by_the_agent_and_the_dashboard(
    value: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_settings(["--state-dir", str(tmp_path)], env={"OCTOTUI_SERVER": value})
    assert exited.value.code == 2 and message in capsys.readouterr().err
    if "99999" not in value:  # the dashboard leaves the port to httpx
        problem = connection_problem(value, "token", None)
        assert problem is not None and message.split(":")[0] in problem, problem


def test_one_server_url_is_still_one_server(tmp_path: Path) -> None:
    settings = parse_settings(["--server", "http://127.0.0.1:8427/", "--state-dir", str(tmp_path)], env={})
    assert settings.server == "http://127.0.0.1:8427" and settings.server_urls == ("http://127.0.0.1:8427",)


# --- the dashboard's and CLI's client --------------------------------------------------------------


def test_the_client_with_two_urls_answers_from_the_second_when_the_first_is_down_and_says_which(
    tmp_path: Path, server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(octotui.client, "RETURN_PROBE", 0.2)
    dead = ServerProcess(tmp_path / "first", *FAST, port=free_port())
    _provider(server)
    switches: list[str] = []

    async def scenario() -> None:
        async with Client(f"{dead.url},{server.url}", "test-admin-token", on_switch=switches.append) as client:
            assert client.base_url == dead.url
            assert [p.name for p in await client.providers()] == ["lab"]
            assert client.base_url == server.url and switches == [server.url]
            dead.start()  # the first comes up (its own empty state): the client goes back to it
            await wait_until_async(lambda: _is(client.base_url, dead.url), timeout=15, what="back to the first")
            assert switches == [server.url, dead.url]
            assert await client.providers() == [], "answered by the first again"

    try:
        asyncio.run(scenario())
    finally:
        dead.stop()


def test_the_client_says_what_each_server_answered_when_none_serves(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]

    async def scenario() -> None:
        async with Client([f"http://127.0.0.1:{p}" for p in ports], "t") as client:
            with pytest.raises(ServerUnreachable) as failed:
                await client.agents()
            for port in ports:
                assert f"127.0.0.1:{port}" in failed.value.message

    asyncio.run(scenario())
    with pytest.raises(ValueError, match="no server URL"):
        Client("http://127.0.0.1:1,", "t")
