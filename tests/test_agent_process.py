"""A real ``octotui-agent`` process against a real ``octotui server`` on loopback."""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.admin import create_provider, online_agent
from tests.support.images import FAKE_IMAGE
from tests.support.processes import ROOT, AgentProcess, ServerProcess
from tests.support.waiting import wait_until


def _agents(api: httpx.Client) -> list[dict[str, Any]]:
    response = api.get("/agents")
    assert response.status_code == 200, response.text
    return response.json()


def _start(server: ServerProcess, agents: list[AgentProcess], tmp_path: Path, token: str, name: str = "gen-a",
           *extra: str, env: dict[str, str] | None = None) -> AgentProcess:  # fmt: skip
    agent = AgentProcess(server.url, token, tmp_path / name, "paris", name, *extra)
    agents.append(agent.start(env=env))
    return agent


def test_registers_heartbeats_with_real_figures_and_exits_on_sigterm(
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path
) -> None:
    api = server.client()
    provider = create_provider(api)
    agent = _start(server, agents, tmp_path, provider["token"], "gen-a", "--interval", "0.5")
    online = wait_until(lambda: online_agent(api, "gen-a"), timeout=30, what="agent online")
    assert online["provider"] == provider["id"] and online["location"] == "paris"
    host = online["host"]
    assert host["cpu_percent"] >= 0 and 0 < host["memory_percent"] < 100 and host["memory_total"] > 0
    assert len(host["cpu_per_core"]) == online["cpu_count"] >= 1
    assert online["docker"] is not None

    def metrics() -> list[dict[str, Any]] | None:
        samples = api.get(f"/agents/{online['id']}/metrics").json()["samples"]
        return samples if len(samples) >= 6 else None

    samples = wait_until(metrics, timeout=20, what="several host samples")
    stamps = [s["ts"] for s in samples]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps), "every reading arrives once, in order"

    identity_path = agent.state_dir / "identity.json"
    assert stat.S_IMODE(os.stat(identity_path).st_mode) == 0o600
    identity = json.loads(identity_path.read_text())
    assert identity["agent_id"] == online["id"] and identity["server"] == server.url and identity["agent_token"]

    assert agent.stop(signal.SIGTERM) == 0
    log = agent.log()
    assert f"registered as {online['id']}" in log
    assert log.count("registered as") == 1 and "Traceback" not in log
    assert "stopped by signal" in log


def test_restart_keeps_identity_and_sigint_exits_cleanly(
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path
) -> None:
    api = server.client()
    provider = create_provider(api)
    agent = _start(server, agents, tmp_path, provider["token"])
    first = wait_until(lambda: online_agent(api, "gen-a"), timeout=30, what="agent online")
    assert agent.stop(signal.SIGINT) == 0
    agent.start()
    wait_until(lambda: f"agent {first['id']} (identity from" in agent.log(), timeout=20, what="identity reused")

    def seen_again() -> dict[str, Any] | None:
        current = online_agent(api, "gen-a")
        return current if current and current["last_seen"] > first["last_seen"] else None

    again = wait_until(seen_again, timeout=20, what="the same agent online again")
    assert again["id"] == first["id"]
    assert len(_agents(api)) == 1, "a restart is the same agent, never a duplicate"
    assert agent.log().count("registered as") == 1, "the provider token was used once"


def test_server_restart_and_outage_the_agent_comes_back_by_itself(
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path
) -> None:
    api = server.client()
    provider = create_provider(api)
    agent = _start(server, agents, tmp_path, provider["token"])
    first = wait_until(lambda: online_agent(api, "gen-a"), timeout=30, what="agent online")
    server.stop()
    time.sleep(3)  # a few failed heartbeats
    server.start()
    api = server.client()

    def back() -> dict[str, Any] | None:
        current = online_agent(api, "gen-a")
        return current if current and current["last_seen"] > first["last_seen"] else None

    again = wait_until(back, timeout=30, what="the agent back after the server restart")
    assert again["id"] == first["id"] and len(_agents(api)) == 1
    # the agent logs its reconnection once it has read the server's answer, a moment after the
    # server has recorded the heartbeat
    wait_until(lambda: "reconnected to" in agent.log(), timeout=10, what="the reconnection logged")
    log = agent.log()
    assert log.count("server unreachable") == 1, "one line per outage, not one per retry"
    assert "reconnected to" in log
    assert agent.proc is not None and agent.proc.poll() is None


def test_agent_started_before_its_server_waits_for_it(
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path
) -> None:
    api = server.client()
    provider = create_provider(api)
    server.stop()
    agent = _start(server, agents, tmp_path, provider["token"])
    wait_until(lambda: "server unreachable" in agent.log(), timeout=20, what="the agent noticing the outage")
    server.start()
    wait_until(lambda: online_agent(server.client(), "gen-a"), timeout=40, what="agent online once the server is up")
    assert agent.log().count("registered as") == 1


def test_revoked_agent_token_registers_again_by_itself(
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path
) -> None:
    api = server.client()
    provider = create_provider(api)
    agent = _start(server, agents, tmp_path, provider["token"])
    first = wait_until(lambda: online_agent(api, "gen-a"), timeout=30, what="agent online")
    assert api.delete(f"/agents/{first['id']}").status_code == 204

    def registered_again() -> dict[str, Any] | None:
        return online_agent(api, "gen-a")

    again = wait_until(registered_again, timeout=30, what="the agent registered again")
    assert len(_agents(api)) == 1
    identity = json.loads((agent.state_dir / "identity.json").read_text())
    assert identity["agent_id"] == again["id"]
    assert "refused this agent's token: registering again" in agent.log()


def test_wrong_provider_token_exits_with_a_clear_error(
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path
) -> None:
    api = server.client()
    create_provider(api)
    agent = _start(server, agents, tmp_path, "not-a-real-token")
    assert agent.proc is not None
    code = agent.proc.wait(timeout=20)
    assert code == 3
    assert "the server refused the provider token" in agent.log()
    assert _agents(api) == [] and not (agent.state_dir / "identity.json").exists()


def test_no_token_and_no_identity_exits_with_usage_error(
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path
) -> None:
    agent = _start(server, agents, tmp_path, "", env={"OCTOTUI_TOKEN": ""})
    assert agent.proc is not None and agent.proc.wait(timeout=20) == 2
    assert "no --token" in agent.log()


def test_agent_without_docker_engine_keeps_monitoring(
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path
) -> None:
    api = server.client()
    provider = create_provider(api)
    env = {"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    agent = _start(server, agents, tmp_path, provider["token"], env=env)
    online = wait_until(lambda: online_agent(api, "gen-a"), timeout=30, what="agent online without docker")
    assert online["docker"]["available"] is False
    assert "no Docker engine answers" in online["docker"]["error"]
    assert online["host"]["memory_percent"] > 0
    wait_until(lambda: "docker engine unavailable" in agent.log() or None, timeout=10, what="log line")


@pytest.mark.docker
@pytest.mark.xdist_group("agent-docker")
@pytest.mark.usefixtures("fake_jmeter_image")
def test_agent_restart_leaves_jmeter_running_and_follows_it_again(
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path, docker_client: Any
) -> None:
    api = server.client()
    provider = create_provider(api)
    agent = _start(server, agents, tmp_path, provider["token"])
    wait_until(lambda: (a := online_agent(api, "gen-a")) and a["docker"]["available"], timeout=30, what="agent online")
    plan = (ROOT / "examples" / "http-get.jmx").read_text()
    body = {"name": "restart", "plan": plan, "provider": provider["id"], "containers": 1, "image": FAKE_IMAGE,
            "properties": {"fake.duration": "10"}}  # fmt: skip
    created = api.post("/tests", json=body)
    assert created.status_code == 201, created.text
    test_id = created.json()["id"]

    def container() -> dict[str, Any] | None:
        current = api.get(f"/tests/{test_id}").json()["containers"][0]
        return current if current["state"] == "running" and current.get("figures") else None

    wait_until(container, timeout=30, what="the container running with figures")
    assert agent.stop(signal.SIGTERM) == 0
    running = docker_client.containers.list(filters={"label": f"io.octotui.test={test_id}"})
    assert len(running) == 1, "the JMeter container outlives the agent"
    agent.start()

    def ended() -> dict[str, Any] | None:
        current = api.get(f"/tests/{test_id}").json()
        return current if current["state"] in ("finished", "failed") else None

    final = wait_until(ended, timeout=60, interval=0.5, what="the test to end")
    assert final["state"] == "finished", final
    assert final["containers"][0]["final"]["samples"] == 50
    assert "found again" in agent.log()
    wait_until(lambda: not docker_client.containers.list(all=True, filters={"label": f"io.octotui.test={test_id}"}),
               timeout=20, what="container removed")  # fmt: skip
