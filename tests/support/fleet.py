"""Agents of a fleet spoken by hand on the wire to a real ``octotui server`` process: each says the
version, machine id and CPU/memory a test chooses, so the dashboard's fleet states can be driven."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from tests.support.processes import ServerProcess
from tests.support.wire import bearer


class FleetAgent:
    """An agent named ``name`` registered with a provider's ``token`` (location ``paris``)."""

    def __init__(self, server: ServerProcess, token: str, name: str, **register: Any) -> None:
        self.http = httpx.Client(base_url=server.url + "/api/v1", timeout=10)
        body = {"name": name, "location": "paris", "cpu_count": 2, **register}
        answer = self.http.post("/agents/register", json=body, headers=bearer(token))
        assert answer.status_code == 200, answer.text
        self.id, self.auth = answer.json()["agent_id"], bearer(answer.json()["agent_token"])
        self.name = name
        #: What its heartbeats say: host CPU and memory (%), and its containers' reports.
        self.cpu, self.mem = 5.0, 10.0
        self.reports: list[dict[str, Any]] = []

    def beat(self, cpu: float | None = None, mem: float | None = None, *reports: dict[str, Any]) -> None:
        """One heartbeat with these host figures (and container reports); what is not given is as before."""
        self.cpu = self.cpu if cpu is None else cpu
        self.mem = self.mem if mem is None else mem
        self.reports = list(reports) or self.reports
        cpu, mem = self.cpu, self.mem
        host = {"ts": time.time(), "cpu_percent": cpu, "cpu_per_core": [cpu, cpu], "memory_percent": mem,
                "memory_total": 2**33, "memory_used": int(2**33 * mem / 100)}  # fmt: skip
        body = {"host": host, "docker": {"available": True, "version": "28"}, "containers": self.reports}
        answer = self.http.post(f"/agents/{self.id}/heartbeat", json=body, headers=self.auth)
        assert answer.status_code == 200, answer.text

    def take_launches(self) -> list[dict[str, Any]]:
        """The launch commands waiting for this agent, acknowledged; their containers' reports, running."""
        commands = self.http.get(f"/agents/{self.id}/commands", params={"timeout": 0}, headers=self.auth).json()
        reports = []
        for cmd in commands:
            acked = self.http.post(f"/agents/{self.id}/commands/{cmd['id']}/ack", json={"ok": True}, headers=self.auth)
            assert acked.status_code == 204, acked.text
            reports.append({"container_id": cmd["container_id"], "test_id": cmd["test_id"],
                            "command_id": cmd["id"], "state": "running"})  # fmt: skip
        return reports

    def close(self) -> None:
        self.http.close()


def fleet(server: ServerProcess, *names: str, provider: str = "lab", **register: Any) -> list[FleetAgent]:
    """Provider ``provider`` (made here) and one agent per name, each having beaten once."""
    with server.client() as http:
        made = http.post("/providers", json={"name": provider}).raise_for_status().json()
    agents = [FleetAgent(server, made["token"], name, **register) for name in names]
    for agent in agents:
        agent.beat()
    return agents


def run_launches(agents: list[FleetAgent]) -> list[dict[str, Any]]:
    """Every agent takes the launches waiting for it and reports their containers running."""
    reports = []
    for agent in agents:
        taken = agent.take_launches()
        agent.beat(None, None, *taken)
        reports += taken
    return reports


class Heartbeats:
    """Every agent of a fleet beats every 0.5 s (in a thread) until :meth:`end`, as it last did."""

    def __init__(self, agents: list[FleetAgent]) -> None:
        self.agents = agents
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for _ in range(2000):
            if self.stop.wait(0.5):
                return
            for agent in self.agents:
                agent.beat()

    def end(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        for agent in self.agents:
            agent.close()


def agents_by_name(server: ServerProcess) -> dict[str, dict[str, Any]]:
    """``GET /agents`` by agent name."""
    with server.client() as http:
        return {a["name"]: a for a in http.get("/agents").json()}
