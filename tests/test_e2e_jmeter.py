"""End to end: a real server, two real agent processes, real Docker, real JMeter.

A test of several containers is spread over two agents, live figures arrive from JMeter's
summariser, a stop ends with JMeter's final summary, the final results hold samples, and no
container is left behind. Bad launches are refused with a clear error and launch nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.admin import create_provider
from tests.support.processes import AgentProcess, ServerProcess
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.jmeter, pytest.mark.xdist_group("jmeter")]

ROOT = Path(__file__).resolve().parent.parent
PLAN = (ROOT / "examples" / "http-get.jmx").read_text() if (ROOT / "examples" / "http-get.jmx").exists() else ""


def _online(api: httpx.Client, count: int, with_docker: bool = True) -> list[dict[str, Any]]:
    def ready() -> list[dict[str, Any]] | None:
        agents = [a for a in api.get("/agents").json() if a["status"] == "online"]
        if with_docker:
            agents = [a for a in agents if (a.get("docker") or {}).get("available")]
        return agents if len(agents) >= count else None

    return wait_until(ready, timeout=40, what=f"{count} online agents")


def _managed_containers(docker_client: Any, test_id: str) -> list[Any]:
    return docker_client.containers.list(all=True, filters={"label": f"io.octotui.test={test_id}"})


def _snapshot(api: httpx.Client) -> tuple[Any, Any]:
    return api.get("/tests").json(), api.get("/providers").json()


@pytest.fixture
def two_agents(
    server: ServerProcess, agents: list[AgentProcess], tmp_path: Path
) -> tuple[httpx.Client, dict[str, Any]]:
    api = server.client()
    provider = create_provider(api, "lab")
    for name, location in (("gen-a", "paris"), ("gen-b", "lyon")):
        agent = AgentProcess(server.url, provider["token"], tmp_path / name, location=location, name=name)
        agents.append(agent.start())
    _online(api, 2)
    return api, provider


def test_spread_live_figures_stop_and_cleanup(server, two_agents, docker_client, jmeter_image, http_target) -> None:  # type: ignore[no-untyped-def]
    api, provider = two_agents
    spec = {
        "name": "e2e spread",
        "plan": PLAN,
        "provider": provider["name"],
        "containers": 4,
        "image": jmeter_image,
        "users": 2,
        "duration": 120,
        "properties": {"host": "127.0.0.1", "port": str(http_target.port), "path": "/"},
    }
    placement = api.post("/tests", json={**spec, "dry_run": True})
    assert placement.status_code == 200, placement.text
    assert sorted(item["containers"] for item in placement.json()["items"]) == [2, 2]
    assert api.get("/tests").json() == [], "a dry run launches nothing"

    created = api.post("/tests", json=spec)
    assert created.status_code == 201, created.text
    test = created.json()
    test_id = test["id"]
    assert len(test["containers"]) == 4
    per_agent: dict[str, int] = {}
    for container in test["containers"]:
        per_agent[container["agent"]] = per_agent.get(container["agent"], 0) + 1
    assert sorted(per_agent.values()) == [2, 2], "containers are spread evenly over the two agents"

    def running() -> dict[str, Any] | None:
        current = api.get(f"/tests/{test_id}").json()
        states = {c["state"] for c in current["containers"]}
        return current if current["state"] == "running" and states == {"running"} else None

    wait_until(running, timeout=90, interval=0.5, what="all four containers running")
    assert len(_managed_containers(docker_client, test_id)) == 4

    def live() -> dict[str, Any] | None:
        current = api.get(f"/tests/{test_id}").json()
        return current if current["results"]["samples"] > 0 else None

    live_test = wait_until(live, timeout=60, interval=1, what="live JMeter figures")
    assert live_test["results"]["throughput"] >= 0
    assert http_target.hits > 0, "the JMeter containers really hit the local target"

    stopped = api.post(f"/tests/{test_id}/stop")
    assert stopped.status_code == 200, stopped.text

    def ended() -> dict[str, Any] | None:
        current = api.get(f"/tests/{test_id}").json()
        return current if current["state"] in ("finished", "failed") else None

    final = wait_until(ended, timeout=90, interval=1, what="the test to end after stop")
    assert final["state"] == "finished", final
    assert final["results"]["samples"] > 0
    results = final["results"]
    assert results["min_ms"] <= results["avg_ms"] <= results["max_ms"]
    assert results["p90_ms"] <= results["p95_ms"] <= results["p99_ms"] <= results["max_ms"]
    assert results["samples"] == sum(c["final"]["samples"] for c in final["containers"]), "JTL totals add up"
    assert {c["state"] for c in final["containers"]} == {"finished"}
    assert all(c["exit_code"] == 0 for c in final["containers"]), [
        (c["agent_name"], c["exit_code"], c["error"]) for c in final["containers"]
    ]  # JMeter stopped gracefully (exit 0)
    wait_until(lambda: not _managed_containers(docker_client, test_id), timeout=30, what="containers removed")

    # The record survives a server restart with its final results.
    server.restart()
    after = server.client().get(f"/tests/{test_id}").json()
    assert after["state"] == "finished"
    assert after["results"]["samples"] == final["results"]["samples"]


def test_bad_launches_are_refused_and_launch_nothing(two_agents, docker_client, jmeter_image) -> None:  # type: ignore[no-untyped-def]
    api, provider = two_agents
    base = {"name": "bad", "plan": PLAN, "provider": provider["id"], "containers": 1, "image": jmeter_image}
    before = _snapshot(api)
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({**base, "plan": "<jmeterTestPlan><oops"}, 422, "plan"),
        ({**base, "plan": "<html><body>not a plan</body></html>"}, 422, "plan"),
        ({**base, "containers": 0}, 422, "containers"),
        ({**base, "containers": 1000}, 409, "hold"),
        ({**base, "provider": "no-such-provider"}, 404, "provider"),
        ({**base, "containers": "two"}, 422, "containers"),
    ]
    for body, status, word in cases:
        response = api.post("/tests", json=body)
        assert response.status_code == status, (body.get("containers"), response.text)
        assert word in response.text.lower(), response.text
    assert _snapshot(api) == before, "refused launches change nothing"
    for agent in api.get("/agents").json():
        mine = docker_client.containers.list(all=True, filters={"label": f"io.octotui.agent={agent['id']}"})
        assert not mine, f"nothing was launched on {agent['name']}"
