"""An agent that speaks the wire protocol by hand to a real ``octotui server`` process, for tests that
decide what each heartbeat reports (figures per label, errors) without Docker or JMeter."""

from __future__ import annotations

import time
from typing import Any

import httpx

from octotui.protocol import rt_bucket
from tests.support.processes import ServerProcess
from tests.support.wire import PLAN, bearer


class WireAgent:
    """An agent named ``name`` in location paris, registered with a provider's ``token``."""

    def __init__(self, server: ServerProcess, token: str, name: str = "gen1") -> None:
        self.http = httpx.Client(base_url=server.url + "/api/v1", timeout=10)
        answer = self.http.post("/agents/register", json={"name": name, "location": "paris"}, headers=bearer(token))
        assert answer.status_code == 200, answer.text
        self.id, self.auth = answer.json()["agent_id"], bearer(answer.json()["agent_token"])

    def beat(self, *reports: dict[str, Any]) -> dict[str, Any]:
        """One heartbeat with these container reports; the server's answer."""
        host = {"ts": time.time(), "cpu_percent": 5.0, "memory_percent": 10.0, "memory_total": 2**33}
        body = {"host": host, "docker": {"available": True, "version": "28"}, "containers": list(reports)}
        answer = self.http.post(f"/agents/{self.id}/heartbeat", json=body, headers=self.auth)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def take_launch(self) -> dict[str, Any]:
        """The launch command waiting for this agent, acknowledged; its container's report, running."""
        (cmd,) = self.http.get(f"/agents/{self.id}/commands", params={"timeout": 0}, headers=self.auth).json()
        acked = self.http.post(f"/agents/{self.id}/commands/{cmd['id']}/ack", json={"ok": True}, headers=self.auth)
        assert acked.status_code == 204, acked.text
        return {"container_id": cmd["container_id"], "test_id": cmd["test_id"], "command_id": cmd["id"],
                "state": "running"}  # fmt: skip

    def close(self) -> None:
        self.http.close()


def running_test(server: ServerProcess, name: str = "shop") -> tuple[WireAgent, dict[str, Any]]:
    """Provider ``lab``, a wire agent in it and a test of one container running there: the agent and
    its container's report (close the agent when done)."""
    with server.client() as http:
        provider = http.post("/providers", json={"name": "lab"}).raise_for_status().json()
        agent = WireAgent(server, provider["token"])
        agent.beat()
        made = http.post("/tests", json={"name": name, "plan": PLAN, "provider": "lab", "containers": 1})
        assert made.status_code == 201, made.text
    report = agent.take_launch()
    agent.beat(report)
    return agent, report


def label_stats(label: str, times_ms: list[float], errors: int = 0, span_s: float | None = None) -> dict[str, Any]:
    """A label's cumulative ``LabelStats`` for samples of these response times over ``span_s``
    seconds (one per second by default), ending now."""
    histogram: dict[int, int] = {}
    for ms in times_ms:
        histogram[rt_bucket(ms)] = histogram.get(rt_bucket(ms), 0) + 1
    now = time.time()
    return {"label": label, "samples": len(times_ms), "errors": errors, "sum_ms": sum(times_ms),
            "min_ms": min(times_ms), "max_ms": max(times_ms), "bytes_received": 2048 * len(times_ms),
            "bytes_sent": 256 * len(times_ms), "first_ts": now - (span_s or len(times_ms)), "last_ts": now,
            "histogram": histogram}  # fmt: skip


def has_per_label_figures(server: ServerProcess, test_id: str) -> bool:
    """False while the server answers 404 to ``GET /tests/{id}/labels`` (older than the endpoint)."""
    with server.client() as http:
        return http.get(f"/tests/{test_id}/labels").status_code != 404
