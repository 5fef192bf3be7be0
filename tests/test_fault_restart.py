"""Faults 1 and 2: the control server, then an agent, SIGKILLed mid-test and restarted.

Real server and agent processes, real JMeter containers against the local HTTP target. What must
hold: containers keep running (same Docker ids, never a second one), figures continue, the test
ends with complete results, and nothing is left behind.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.admin import create_provider
from tests.support.faultkit import (
    Reaper,
    agent_id,
    ended,
    figures,
    get_test,
    gone,
    launch,
    log_figure,
    of_test,
    online,
    running_with_figures,
    since,
    start_agent,
)
from tests.support.processes import AgentProcess, ServerProcess
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.jmeter]


def _complete(final: dict[str, Any], hits: int) -> None:
    """Final results hold every sample: each container has its JTL aggregate, and they add up to
    what the target answered (a sample in flight at the very end may be missing from the JTL)."""
    cs = final["containers"]
    assert all(c["final"] is not None for c in cs), cs
    total = sum(c["final"]["samples"] for c in cs)
    assert final["results"]["samples"] == total
    assert total > 0
    assert hits - total <= max(5, hits // 100), f"records lost: target answered {hits}, results hold {total}"


def test_server_sigkill_mid_test_and_restart(
    server: ServerProcess,
    agents: list[AgentProcess],
    reaper: Reaper,
    tmp_path: Path,
    docker_client: Any,
    jmeter_image: str,
    http_target: Any,
) -> None:
    api = server.client()
    prov = create_provider(api)
    for name in ("gen-a", "gen-b"):
        start_agent(server.url, prov, tmp_path, name, agents)
    online(api, ["gen-a", "gen-b"])
    test = launch(api, prov, jmeter_image, http_target.port, containers=2, duration=60)
    reaper.tests.add(test["id"])
    before = running_with_figures(api, test["id"])
    docker_ids = {c.id for c in of_test(docker_client, test["id"])}
    assert len(docker_ids) == 2

    killed = time.monotonic()
    server.stop(signal.SIGKILL)
    time.sleep(2)
    assert {c.id for c in of_test(docker_client, test["id"])} == docker_ids
    assert all(c.status == "running" for c in of_test(docker_client, test["id"])), "containers keep running"
    server.start()  # same port, same data dir
    api = server.client()
    online(api, ["gen-a", "gen-b"], timeout=60)
    back = since(killed)

    def figures_grow() -> bool:
        now = get_test(api, test["id"])
        return now["state"] == "running" and all(
            figures(c) > figures(next(b for b in before["containers"] if b["id"] == c["id"])) for c in now["containers"]
        )

    wait_until(figures_grow, timeout=30, interval=0.5, what="figures to go on after the restart")
    resumed = since(killed)
    final = ended(api, test["id"], timeout=90)
    assert final["state"] == "finished", final
    assert {c["state"] for c in final["containers"]} == {"finished"}
    _complete(final, http_target.hits)
    gone(docker_client, test["id"])
    assert "started twice" not in server.log_path.read_text()
    log_figure("server-sigkill", down_s=2, agents_back_s=back, figures_resumed_s=resumed,
               samples=final["results"]["samples"], hits=http_target.hits)  # fmt: skip


def test_agent_sigkill_mid_test_and_restart(
    server: ServerProcess,
    agents: list[AgentProcess],
    reaper: Reaper,
    tmp_path: Path,
    docker_client: Any,
    jmeter_image: str,
    http_target: Any,
) -> None:
    api = server.client()
    prov = create_provider(api)
    gen_a = start_agent(server.url, prov, tmp_path, "gen-a", agents)
    start_agent(server.url, prov, tmp_path, "gen-b", agents)
    online(api, ["gen-a", "gen-b"])
    test = launch(api, prov, jmeter_image, http_target.port, containers=2, duration=30)
    reaper.tests.add(test["id"])
    before = running_with_figures(api, test["id"])
    docker_ids = {c.id for c in of_test(docker_client, test["id"])}
    mine = next(c for c in before["containers"] if c["agent"] == agent_id(gen_a))

    killed = time.monotonic()
    gen_a.stop(signal.SIGKILL)
    time.sleep(1)
    gen_a.start()

    def followed_again() -> bool:
        c = next(x for x in get_test(api, test["id"])["containers"] if x["id"] == mine["id"])
        return c["state"] == "running" and figures(c) > figures(mine)

    wait_until(followed_again, timeout=40, interval=0.3, what="the restarted agent's figures to continue")
    resumed = since(killed)
    assert "found again" in gen_a.log()
    assert {c.id for c in of_test(docker_client, test["id"])} == docker_ids, "no duplicate container"
    final = ended(api, test["id"], timeout=90)
    assert final["state"] == "finished", final
    _complete(final, http_target.hits)
    gone(docker_client, test["id"])
    assert not of_test(docker_client, test["id"]), "no orphan"
    log_figure("agent-sigkill", figures_resumed_s=resumed, samples=final["results"]["samples"],
               hits=http_target.hits)  # fmt: skip
