"""The agent and the dashboard's client through a real HTTP proxy (Debian's tinyproxy) on loopback.

httpx does not bypass loopback addresses by itself: with ``HTTP_PROXY``/``HTTPS_PROXY`` set and no
``NO_PROXY``, a server on 127.0.0.1 is reached through the proxy, which is what these tests rely on;
``NO_PROXY=127.0.0.1`` must send everything direct. ``scripts/test-tools.sh`` installs tinyproxy.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from octotui.client import Client
from tests.support.admin import create_provider, online_agent
from tests.support.processes import ROOT, AgentProcess, ServerProcess, free_port, missing
from tests.support.tinyproxy import Tinyproxy
from tests.support.waiting import wait_until


def test_agent_registers_and_heartbeats_through_the_proxy(
    server: ServerProcess, agents: list[AgentProcess], tinyproxy: Tinyproxy, tmp_path: Path
) -> None:
    api = server.client()  # the test's own client goes direct (trust_env has no proxy here)
    provider = create_provider(api, "proxied")
    agent = AgentProcess(server.url, provider["token"], tmp_path / "gen-p", "paris", "gen-p", "--interval", "0.5")
    agents.append(agent.start(env=tinyproxy.env()))
    online = wait_until(lambda: online_agent(api, "gen-p"), timeout=30, what="the agent online through the proxy")
    wait_until(lambda: tinyproxy.requests("/heartbeat") >= 3, timeout=20, what="heartbeats in the proxy log")
    log = tinyproxy.log()
    assert f"http://127.0.0.1:{server.port}/api/v1/agents/register" in log
    assert tinyproxy.requests(f"/api/v1/agents/{online['id']}/commands") >= 1, "the long poll goes through it too"
    assert "Traceback" not in agent.log()


def test_no_proxy_sends_the_agent_direct(
    server: ServerProcess, agents: list[AgentProcess], tinyproxy: Tinyproxy, tmp_path: Path
) -> None:
    api = server.client()
    provider = create_provider(api, "proxied")
    agent = AgentProcess(server.url, provider["token"], tmp_path / "gen-d", "paris", "gen-d", "--interval", "0.5")
    agents.append(agent.start(env=tinyproxy.env(NO_PROXY="127.0.0.1")))
    wait_until(lambda: online_agent(api, "gen-d"), timeout=30, what="the agent online, direct")
    time.sleep(2)  # a few heartbeats and polls
    assert tinyproxy.requests("/api/v1/") == 0, f"NO_PROXY is honoured; proxy log:\n{tinyproxy.log()[-2000:]}"


def test_agent_behind_a_dead_proxy_says_so_and_registers_nowhere(
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path
) -> None:
    api = server.client()
    provider = create_provider(api, "proxied")
    dead = f"http://127.0.0.1:{free_port()}"
    agent = AgentProcess(server.url, provider["token"], tmp_path / "gen-x", "paris", "gen-x")
    env = {"HTTP_PROXY": dead, "HTTPS_PROXY": dead, "NO_PROXY": ""}
    agents.append(agent.start(env={**env, **{k.lower(): v for k, v in env.items()}}))
    wait_until(lambda: "server unreachable" in agent.log(), timeout=20, what="the agent reporting the outage")
    assert api.get("/agents").json() == []
    assert agent.proc is not None and agent.proc.poll() is None, "it keeps retrying"


@pytest.mark.docker
@pytest.mark.xdist_group("agent-docker")
def test_agent_receives_and_acknowledges_commands_through_the_proxy(  # type: ignore[no-untyped-def]
    server: ServerProcess, agents: list[AgentProcess], tinyproxy: Tinyproxy, tmp_path: Path, docker_client
) -> None:
    import docker.errors

    from tests.support.images import FAKE_IMAGE

    try:
        docker_client.images.get(FAKE_IMAGE)
    except docker.errors.ImageNotFound:
        missing(f"{FAKE_IMAGE} is missing: run tests/test_agent_docker.py once to make it")
    api = server.client()
    provider = create_provider(api, "proxied")
    agent = AgentProcess(server.url, provider["token"], tmp_path / "gen-c", "paris", "gen-c")
    agents.append(agent.start(env=tinyproxy.env()))
    wait_until(lambda: online_agent(api, "gen-c", docker=True), timeout=30, what="the agent online with Docker")
    body = {"name": "via proxy", "plan": (ROOT / "examples" / "http-get.jmx").read_text(),
            "provider": provider["id"], "containers": 1, "image": FAKE_IMAGE,
            "properties": {"fake.duration": "60"}}  # fmt: skip
    created = api.post("/tests", json=body)
    assert created.status_code == 201, created.text
    test_id = created.json()["id"]
    try:

        def running() -> dict[str, Any] | None:
            current = api.get(f"/tests/{test_id}").json()["containers"][0]
            return current if current["state"] == "running" and current.get("figures") else None

        wait_until(running, timeout=30, what="the launch command delivered through the proxy")
        assert api.post(f"/tests/{test_id}/stop").status_code == 200

        def ended() -> dict[str, Any] | None:
            current = api.get(f"/tests/{test_id}").json()
            return current if current["state"] in ("finished", "failed") else None

        wait_until(ended, timeout=60, interval=0.5, what="the stop command delivered through the proxy")
        assert tinyproxy.requests("/ack ") >= 2, "launch and stop acknowledged through the proxy"
        assert tinyproxy.requests("/commands") >= 2
    finally:
        for leftover in docker_client.containers.list(all=True, filters={"label": f"io.octotui.test={test_id}"}):
            leftover.remove(force=True)


async def test_dashboard_client_goes_through_the_proxy_and_honours_no_proxy(
    server: ServerProcess, tinyproxy: Tinyproxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in tinyproxy.env().items():
        monkeypatch.setenv(name, value)
    # One client per call: tinyproxy closes every client connection after one answer, but leaves no
    # "Connection: close" in it, so a reused pooled connection races with that close (see report).
    async with Client(server.url, server.admin_token) as client:
        assert (await client.health()).status == "ok"
    async with Client(server.url, server.admin_token) as client:
        await client.create_provider("from-dashboard")
    async with Client(server.url, server.admin_token) as client:
        assert [p.name for p in await client.providers()] == ["from-dashboard"]
    assert tinyproxy.requests(f"http://127.0.0.1:{server.port}/api/v1/health") == 1
    assert tinyproxy.requests("/api/v1/providers") == 2

    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1")
    before = tinyproxy.requests("/api/v1/")
    async with Client(server.url, server.admin_token) as client:
        assert len(await client.providers()) == 1
        assert len(await client.providers()) == 1
    assert tinyproxy.requests("/api/v1/") == before, "NO_PROXY sends the dashboard direct"
