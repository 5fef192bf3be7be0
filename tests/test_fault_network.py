"""Faults 6 and 7: a bad network between agent and server, through tests/support/faultproxy.py on loopback.

6. Delays, cuts mid-response and a dropped network while a test is launched and stopped: every
   command runs exactly once (by command id), heartbeats resume, no test record is lost.
7. A proxy that kills idle connections after 3 s: the long poll recovers each time and commands
   still arrive at once.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.admin import create_provider
from tests.support.faultkit import (
    Reaper,
    ended,
    gone,
    launch,
    log_figure,
    of_test,
    online,
    running_with_figures,
    since,
)
from tests.support.faultproxy import FaultProxy
from tests.support.processes import AgentProcess, ServerProcess
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.jmeter]


def _agent_behind(proxy: FaultProxy, prov: dict[str, Any], tmp_path: Path, agents: list[AgentProcess]) -> AgentProcess:
    agent = AgentProcess(proxy.url, prov["token"], tmp_path / "gen-p", "paris", "gen-p")
    agents.append(agent.start())
    return agent


def _runs(log: str, container_id: str) -> int:
    return len(re.findall(rf"container {re.escape(container_id)} running", log))


@pytest.fixture
def patient_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server that calls an agent offline after 12 s without a heartbeat (beats every 1 s).

    A drop shorter than that must be absorbed without losing anything; a longer one is faults 3
    and 4 (the agent's containers are lost, then reconciled when it returns).
    """
    proc = ServerProcess(
        tmp_path / "server", "--heartbeat-interval", "1", "--late-after", "4", "--offline-after", "12"
    ).start()
    yield proc
    proc.stop()


def _seen_after(api: httpx.Client, name: str, moment: float) -> bool:
    for record in api.get("/agents").json():
        if record["name"] == name and record["last_seen"]:
            return datetime.fromisoformat(record["last_seen"]).timestamp() > moment
    return False


def test_drops_delays_and_cuts_deliver_commands_exactly_once(
    patient_server: ServerProcess, agents: list[AgentProcess], reaper: Reaper,
    tmp_path: Path, docker_client: Any, jmeter_image: str, http_target: Any,
) -> None:  # fmt: skip
    server = patient_server
    api = server.client()
    prov = create_provider(api)
    with FaultProxy(("127.0.0.1", server.port), seed=5) as proxy:
        agent = _agent_behind(proxy, prov, tmp_path, agents)
        online(api, ["gen-p"])
        proxy.delay_s = 0.3
        proxy.cut_probability = 0.4
        test = launch(api, prov, jmeter_image, http_target.port, containers=2, duration=120)
        reaper.tests.add(test["id"])
        time.sleep(6)
        proxy.refuse = True  # the network drops for 5 s
        proxy.kill_all()
        time.sleep(5)
        proxy.heal()
        healed, healed_wall = time.monotonic(), time.time()
        wait_until(lambda: _seen_after(api, "gen-p", healed_wall), timeout=20, interval=0.1, what="a heartbeat")
        heartbeats_back = since(healed)
        running_with_figures(api, test["id"], timeout=40)
        proxy.delay_s = 0.3
        proxy.cut_probability = 0.4
        stopped = api.post(f"/tests/{test['id']}/stop")
        assert stopped.status_code == 200, stopped.text
        time.sleep(3)
        proxy.heal()
        final = ended(api, test["id"], timeout=60)
        log = agent.log()
        assert final["state"] == "finished", final
        assert len(final["containers"]) == 2 and all(c["final"] for c in final["containers"]), "no record lost"
        for c in final["containers"]:
            assert c["state"] == "finished", c
            assert _runs(log, c["id"]) == 1, f"container {c['id']} started {_runs(log, c['id'])} times"
            assert log.count(f"launch of container {c['id']}") == 1, f"launch of {c['id']} executed twice"
        assert "is offline" not in server.log_path.read_text(), "a 5 s drop made the agent go offline"
        gone(docker_client, test["id"])
        assert api.get(f"/tests/{test['id']}").json()["results"]["samples"] > 0
        log_figure("network-chaos", connections=proxy.connections, cuts=proxy.cuts, resets=proxy.resets,
                   heartbeats_back_s=heartbeats_back, samples=final["results"]["samples"])  # fmt: skip


def test_idle_killing_proxy_long_poll_recovers(
    server: ServerProcess, agents: list[AgentProcess], reaper: Reaper,
    tmp_path: Path, docker_client: Any, jmeter_image: str, http_target: Any,
) -> None:  # fmt: skip
    api = server.client()
    prov = create_provider(api)
    with FaultProxy(("127.0.0.1", server.port)) as proxy:
        proxy.idle_kill_s = 3.0
        agent = _agent_behind(proxy, prov, tmp_path, agents)
        online(api, ["gen-p"])
        # the first kill teaches the agent the idle limit; later ones are its probes for a longer one
        wait_until(lambda: proxy.idle_kills >= 2, timeout=30, what="the proxy to kill idle polls")
        time.sleep(2)
        asked = time.monotonic()
        test = launch(api, prov, jmeter_image, http_target.port, containers=1, duration=20)
        reaper.tests.add(test["id"])
        wait_until(lambda: of_test(docker_client, test["id"]), timeout=20, interval=0.1, what="launch delivered")
        delivery = since(asked)
        assert delivery < 8, f"a command waited {delivery} s behind an idle-killing proxy"
        final = ended(api, test["id"], timeout=90)
        assert final["state"] == "finished", final
        log = agent.log()
        assert _runs(log, final["containers"][0]["id"]) == 1
        assert "long poll cut after" in log
        assert "server unreachable" not in log, "an idle kill was taken for an outage (backoff)"
        wait_until(lambda: api.get("/agents").json()[0]["status"] == "online", timeout=10, what="the agent online")
        gone(docker_client, test["id"])
        log_figure("idle-kill-proxy", idle_kills=proxy.idle_kills, launch_delivery_s=delivery,
                   samples=final["results"]["samples"])  # fmt: skip
