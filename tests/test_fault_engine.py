"""Fault 5: the Docker engine stops under an agent; fault 9: JMeter exits with an error.

The engine fault goes through a unix-socket relay (tests/support/faultproxy.py) between the agent
(``DOCKER_HOST=unix://RELAY``) and the main engine, which the test cuts and restores: to the agent
it is exactly an engine that stops answering (socket gone, connections reset), without loading the
600 MB image into a second ``dockerd`` and without ever touching the engine the suite shares.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.admin import create_provider
from tests.support.faultkit import (
    PLAN,
    Reaper,
    ended,
    get_test,
    gone,
    launch,
    log_figure,
    online,
    running_with_figures,
    since,
    start_agent,
)
from tests.support.faultproxy import FaultProxy
from tests.support.processes import AgentProcess, ServerProcess
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.jmeter]
ENGINE = "/var/run/docker.sock"


def _docker_of(api: Any, name: str) -> dict[str, Any]:
    return next(a for a in api.get("/agents").json() if a["name"] == name).get("docker") or {}


def test_engine_stops_under_an_agent_and_comes_back(
    server: ServerProcess, agents: list[AgentProcess], reaper: Reaper,
    tmp_path: Path, docker_client: Any, jmeter_image: str, http_target: Any,
) -> None:  # fmt: skip
    api = server.client()
    prov = create_provider(api)
    relay = FaultProxy(ENGINE, listen_unix=str(tmp_path / "docker.sock")).start()
    try:
        agent = start_agent(server.url, prov, tmp_path, "gen-e", agents, DOCKER_HOST=f"unix://{tmp_path}/docker.sock")
        online(api, ["gen-e"])
        test = launch(api, prov, jmeter_image, http_target.port, containers=1, duration=60)
        reaper.tests.add(test["id"])
        running_with_figures(api, test["id"])
        cut = time.monotonic()
        relay.down()
        wait_until(lambda: _docker_of(api, "gen-e").get("available") is False, timeout=20, what="engine down")
        reported_s = since(cut)
        failed = wait_until(
            lambda: (t := get_test(api, test["id"]))["containers"][0]["state"] == "failed" and t,
            timeout=20, what="container failed",
        )  # fmt: skip
        failed_s = since(cut)
        error = failed["containers"][0]["error"] or ""
        assert "docker engine unavailable" in error, error
        assert _docker_of(api, "gen-e").get("error"), "the agent says why the engine is unavailable"
        wait_until(  # the agent keeps monitoring its host (a wait: one slow beat may show it late)
            lambda: any(a["name"] == "gen-e" and a["status"] == "online" for a in api.get("/agents").json()),
            timeout=10, what="gen-e online without its engine",
        )  # fmt: skip
        final = ended(api, test["id"], timeout=20)
        assert final["state"] == "failed" and "docker engine unavailable" in (final["reason"] or ""), final
        back = time.monotonic()
        relay.up()
        wait_until(lambda: _docker_of(api, "gen-e").get("available"), timeout=30, what="engine back noticed")
        noticed_s = since(back)
        assert "docker engine available" in agent.log()
        # the container that kept running on the engine is followed again, then stopped and removed
        # because its record says failed
        gone(docker_client, test["id"], timeout=60)
        cleaned_s = since(back)
        log_figure("engine-down", reported_s=reported_s, failed_s=failed_s, back_noticed_s=noticed_s,
                   container_removed_after_return_s=cleaned_s)  # fmt: skip
    finally:
        relay.stop()


def test_jmeter_errors_fail_their_container_and_others_go_on(
    server: ServerProcess, agents: list[AgentProcess], reaper: Reaper,
    tmp_path: Path, docker_client: Any, jmeter_image: str, http_target: Any,
) -> None:  # fmt: skip
    api = server.client()
    prov = create_provider(api)
    start_agent(server.url, prov, tmp_path, "gen-j", agents)
    online(api, ["gen-j"])
    healthy = launch(api, prov, jmeter_image, http_target.port, containers=1, duration=30)
    bad_plan = PLAN.replace("HTTPSamplerProxy", "NoSuchSamplerElement")
    broken = launch(api, prov, jmeter_image, http_target.port, containers=1, duration=10, plan=bad_plan)
    refused = launch(api, prov, jmeter_image, 1, containers=1, duration=10)  # nothing listens on port 1
    reaper.tests |= {healthy["id"], broken["id"], refused["id"]}
    b = ended(api, broken["id"], timeout=90)
    r = ended(api, refused["id"], timeout=90)
    assert b["state"] == "failed", b
    assert "Error in NonGUIDriver" in (b["containers"][0]["error"] or ""), b["containers"][0]
    assert r["state"] == "failed", r
    assert "every sample failed" in (r["containers"][0]["error"] or ""), r["containers"][0]
    assert "Connect" in (r["containers"][0]["error"] or ""), r["containers"][0]["error"]
    assert get_test(api, healthy["id"])["state"] == "running", "the other containers go on"
    h = ended(api, healthy["id"], timeout=90)
    assert h["state"] == "finished" and h["results"]["samples"] > 0, h
    for t in (healthy, broken, refused):
        gone(docker_client, t["id"])
    log_figure("jmeter-errors", bad_plan_error=repr((b["containers"][0]["error"] or "")[:80]),
               refused_error=repr((r["containers"][0]["error"] or "")[:80]))  # fmt: skip
