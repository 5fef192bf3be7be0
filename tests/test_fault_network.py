"""Faults 6 and 7: a bad network between agent and server, through tests/faultproxy.py on loopback.

6. Delays, cuts mid-response and a dropped network while a test is launched and stopped: every
   command runs exactly once (by command id), heartbeats resume, no test record is lost.
7. A proxy that kills idle connections after 3 s: the long poll recovers each time and commands
   still arrive at once.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import AgentProcess, ServerProcess, wait_until
from tests.faultkit import (
    Reaper,
    ended,
    gone,
    launch,
    log_figure,
    of_test,
    online,
    provider,
    reaper,  # noqa: F401 - fixture
    running_with_figures,
    since,
)
from tests.faultproxy import FaultProxy

pytestmark = [pytest.mark.docker, pytest.mark.jmeter]


def _agent_behind(proxy: FaultProxy, prov: dict[str, Any], tmp_path: Path, agents: list[AgentProcess]) -> AgentProcess:
    agent = AgentProcess(proxy.url, prov["token"], tmp_path / "gen-p", "paris", "gen-p")
    agents.append(agent.start())
    return agent


def _runs(log: str, container_id: str) -> int:
    return len(re.findall(rf"container {re.escape(container_id)} running", log))


@pytest.mark.xfail(strict=False, reason="not passing yet, cause not diagnosed: see docs/RELIABILITY.md (fault 6/7)")
def test_drops_delays_and_cuts_deliver_commands_exactly_once(
    server: ServerProcess, agents: list[AgentProcess], reaper: Reaper,  # noqa: F811
    tmp_path: Path, docker_client: Any, jmeter_image: str, http_target: Any,
) -> None:  # fmt: skip
    api = server.client()
    prov = provider(api)
    with FaultProxy(("127.0.0.1", server.port), seed=5) as proxy:
        agent = _agent_behind(proxy, prov, tmp_path, agents)
        online(api, ["gen-p"])
        proxy.delay_s = 0.3
        proxy.cut_probability = 0.4
        test = launch(api, prov, jmeter_image, http_target.port, containers=2, duration=120)
        reaper.tests.add(test["id"])
        time.sleep(6)
        proxy.refuse = True  # the network drops
        proxy.kill_all()
        time.sleep(5)
        proxy.heal()
        healed = time.monotonic()
        running_with_figures(api, test["id"], timeout=120)
        online(api, ["gen-p"], timeout=60)
        heartbeats_back = since(healed)
        proxy.cut_probability = 0.4
        stopped = api.post(f"/tests/{test['id']}/stop")
        assert stopped.status_code == 200, stopped.text
        time.sleep(3)
        proxy.heal()
        final = ended(api, test["id"], timeout=120)
        log = agent.log()
        assert final["state"] == "finished", final
        assert len(final["containers"]) == 2 and all(c["final"] for c in final["containers"]), "no record lost"
        for c in final["containers"]:
            assert _runs(log, c["id"]) == 1, f"container {c['id']} started {_runs(log, c['id'])} times"
        gone(docker_client, test["id"])
        assert server.client().get(f"/tests/{test['id']}").json()["results"]["samples"] > 0
        log_figure("network-chaos", connections=proxy.connections, cuts=proxy.cuts, resets=proxy.resets,
                   heartbeats_back_s=heartbeats_back, samples=final["results"]["samples"])  # fmt: skip


@pytest.mark.xfail(strict=False, reason="not passing yet, cause not diagnosed: see docs/RELIABILITY.md (fault 6/7)")
def test_idle_killing_proxy_long_poll_recovers(
    server: ServerProcess, agents: list[AgentProcess], reaper: Reaper,  # noqa: F811
    tmp_path: Path, docker_client: Any, jmeter_image: str, http_target: Any,
) -> None:  # fmt: skip
    api = server.client()
    prov = provider(api)
    with FaultProxy(("127.0.0.1", server.port)) as proxy:
        proxy.idle_kill_s = 3.0
        agent = _agent_behind(proxy, prov, tmp_path, agents)
        online(api, ["gen-p"])
        wait_until(lambda: proxy.idle_kills >= 2, timeout=30, what="the proxy to kill idle polls")
        time.sleep(4)
        asked = time.monotonic()
        test = launch(api, prov, jmeter_image, http_target.port, containers=1, duration=20)
        reaper.tests.add(test["id"])
        wait_until(lambda: of_test(docker_client, test["id"]), timeout=20, interval=0.1, what="launch delivered")
        delivery = since(asked)
        assert delivery < 8, f"a command waited {delivery} s behind an idle-killing proxy"
        final = ended(api, test["id"], timeout=90)
        assert final["state"] == "finished", final
        assert _runs(agent.log(), final["containers"][0]["id"]) == 1
        assert api.get("/agents").json()[0]["status"] == "online"
        gone(docker_client, test["id"])
        log_figure("idle-kill-proxy", idle_kills=proxy.idle_kills, launch_delivery_s=delivery,
                   samples=final["results"]["samples"])  # fmt: skip
