"""Helpers shared by the fault suite (``tests/test_fault_*.py``): a lab of one server and its agents,
short JMeter launches against the local HTTP target, bounded waits, and clean-up by label.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from octotui.protocol import LABEL_AGENT, LABEL_TEST
from tests.support.processes import ROOT, AgentProcess
from tests.support.waiting import wait_until

PLAN = (ROOT / "examples" / "http-get.jmx").read_text()
#: Terminal states of a test and of a container.
ENDED = ("finished", "failed")


def start_agent(
    server_url: str, prov: dict[str, Any], tmp_path: Path, name: str, agents: list[AgentProcess], **env: str
) -> AgentProcess:
    """Start one agent (registered in ``agents`` so that the fixture stops it)."""
    agent = AgentProcess(server_url, prov["token"], tmp_path / name, "paris", name)
    agents.append(agent.start(env=env or None))
    return agent


def agent_id(agent: AgentProcess) -> str:
    """The id the agent registered under (from its identity file)."""
    return str(json.loads((agent.state_dir / "identity.json").read_text())["agent_id"])


def online(api: httpx.Client, names: list[str], timeout: float = 40) -> dict[str, dict[str, Any]]:
    """Wait until the named agents are online with a Docker engine; their records by name."""

    def ready() -> dict[str, dict[str, Any]] | None:
        found = {
            a["name"]: a
            for a in api.get("/agents").json()
            if a["status"] == "online" and (a.get("docker") or {}).get("available")
        }
        return found if all(n in found for n in names) else None

    return wait_until(ready, timeout=timeout, interval=0.2, what=f"agents {names} online with docker")


def launch(
    api: httpx.Client,
    prov: dict[str, Any],
    image: str,
    port: int,
    containers: int = 1,
    duration: int = 30,
    plan: str = PLAN,
    **props: str,
) -> dict[str, Any]:
    """Launch a short JMeter test (1 user, 50 ms think time) against 127.0.0.1:``port``."""
    spec = {
        "name": f"fault {time.monotonic():.3f}",
        "plan": plan,
        "provider": prov["id"],
        "containers": containers,
        "image": image,
        "users": 1,
        "duration": duration,
        "properties": {"host": "127.0.0.1", "port": str(port), "path": "/", "think_ms": "50", **props},
    }
    response = api.post("/tests", json=spec)
    assert response.status_code == 201, response.text
    return response.json()


def get_test(api: httpx.Client, test_id: str) -> dict[str, Any]:
    response = api.get(f"/tests/{test_id}")
    assert response.status_code == 200, response.text
    return response.json()


def running_with_figures(api: httpx.Client, test_id: str, timeout: float = 90) -> dict[str, Any]:
    """Wait until every container runs and each has reported JMeter figures."""

    def ready() -> dict[str, Any] | None:
        t = get_test(api, test_id)
        cs = t["containers"]
        ok = all(c["state"] == "running" and (c["figures"] or {}).get("samples", 0) > 0 for c in cs)
        return t if ok else None

    return wait_until(ready, timeout=timeout, interval=0.5, what=f"test {test_id} running with figures")


def ended(api: httpx.Client, test_id: str, timeout: float = 90) -> dict[str, Any]:
    """Wait until the test is finished or failed."""
    return wait_until(
        lambda: (t := get_test(api, test_id))["state"] in ENDED and t,
        timeout=timeout,
        interval=0.5,
        what=f"test {test_id} to end",
    )


def labelled(docker_client: Any, key: str, value: str) -> list[Any]:
    """Every container (any state) carrying label ``key=value``."""
    return list(docker_client.containers.list(all=True, filters={"label": f"{key}={value}"}))


def of_test(docker_client: Any, test_id: str) -> list[Any]:
    return labelled(docker_client, LABEL_TEST, test_id)


def gone(docker_client: Any, test_id: str, timeout: float = 40) -> None:
    """Wait until no container of the test is left (no orphan)."""
    wait_until(lambda: not of_test(docker_client, test_id), timeout=timeout, what=f"no container of {test_id}")


def since(start: float) -> float:
    return round(time.monotonic() - start, 1)


class Reaper:
    """Removes, at teardown, every container labelled with a test or agent id it was told about."""

    def __init__(self, docker_client: Any) -> None:
        self.docker = docker_client
        self.tests: set[str] = set()
        self.agents: list[AgentProcess] = []

    def sweep(self) -> int:
        ids: set[str] = set()
        for test_id in self.tests:
            ids |= {c.id for c in labelled(self.docker, LABEL_TEST, test_id)}
        for agent in self.agents:
            with contextlib.suppress(OSError, ValueError, KeyError):
                ids |= {c.id for c in labelled(self.docker, LABEL_AGENT, agent_id(agent))}
        for cid in ids:
            with contextlib.suppress(Exception):
                self.docker.api.remove_container(cid, force=True, v=True)
        return len(ids)


@pytest.fixture
def reaper(docker_client: Any, agents: list[AgentProcess]) -> Iterator[Reaper]:
    """Clean-up by label of the containers a fault test leaves (after its agents are stopped)."""
    r = Reaper(docker_client)
    r.agents = agents
    yield r
    for agent in agents:
        with contextlib.suppress(Exception):
            agent.stop()
    r.sweep()


def figures(report: dict[str, Any]) -> int:
    return int((report.get("figures") or {}).get("samples", 0))


def log_figure(name: str, **values: Any) -> None:
    """Print a measured figure for docs/RELIABILITY.md (visible with ``-s`` or in the report)."""
    line = f"FIGURE {name}: " + ", ".join(f"{k}={v}" for k, v in values.items())
    print(line)
    target = os.environ.get("OCTOTUI_FAULT_FIGURES")
    if target:
        with open(target, "a") as handle:
            handle.write(line + "\n")


__all__ = [
    "ENDED",
    "PLAN",
    "Reaper",
    "agent_id",
    "ended",
    "figures",
    "get_test",
    "gone",
    "launch",
    "log_figure",
    "of_test",
    "online",
    "running_with_figures",
    "since",
    "start_agent",
]
