"""Figure 2: the agent's footprint while it runs 20 JMeter containers."""

from __future__ import annotations

import re
import time

from bench import dockerutil
from bench.common import (
    JMETER_IMAGE,
    PLAN,
    Metric,
    Result,
    Sampler,
    repeat,
    running_agent,
    scratch,
    server_with_provider,
    wait_online,
    wait_until,
)  # fmt: skip
from tests.support.httptarget import HttpTarget

TITLE = "Agent with 20 running JMeter containers"
TARGET = "< 60 MB RSS, < 2 % of one core"
WANTED = 20
METHOD = f"""a real server (5 s heartbeats) and a real agent (1 s sampling); one test of {WANTED}
containers of `{JMETER_IMAGE}` running `examples/http-get.jmx` against the tests' HTTP target on
127.0.0.1 with users=1 and think_ms=200 (about 5 requests/s per container, so the containers do not
eat the 2-core machine). Placement budgets each container 0.1 core and 512 MiB against the agent's
free CPU and memory: when {WANTED} do not fit, the server says how many can, and that many run
(reported below). Once every container is `running` and 10 s have passed, psutil reads the agent's
pid every second for the window (the JMeter containers are children of dockerd, not of the agent,
so only the agent is counted). The test is stopped and every container removed afterwards."""


def _once(window: float) -> dict[str, float]:
    dc = dockerutil.client()
    test_ids: list[str] = []
    try:
        with (
            scratch("jmeter") as tmp,
            HttpTarget() as target,
            server_with_provider(tmp) as (server, api, provider),
            running_agent(server, provider["token"], tmp, "busy-agent") as agent,
        ):
            wait_online(api, "busy-agent", docker=True)
            time.sleep(6)  # a few host samples, so placement sees the machine's real load
            spec = {
                "name": "agent-footprint", "plan": PLAN, "provider": provider["id"], "containers": WANTED,
                "image": JMETER_IMAGE, "users": 1, "duration": 900,
                "properties": {"host": "127.0.0.1", "port": str(target.port), "path": "/", "think_ms": "200"},
            }  # fmt: skip
            response = api.post("/tests", json=spec)
            if response.status_code == 409:
                found = re.search(r"can hold only (\d+)", response.text)
                if not found or int(found.group(1)) < 1:
                    raise AssertionError(f"placement refused: {response.text}")
                spec["containers"] = int(found.group(1))
                response = api.post("/tests", json=spec)
            response.raise_for_status()
            test = response.json()
            test_ids.append(test["id"])
            count = len(test["containers"])

            def all_running() -> bool:
                t = api.get(f"/tests/{test['id']}").json()
                return int(sum(c["state"] == "running" for c in t["containers"])) == count

            wait_until(all_running, timeout=180, interval=1, what=f"{count} containers running")
            time.sleep(10)
            assert agent.proc is not None
            with Sampler(agent.proc.pid) as sampler:
                time.sleep(window)
            cpu, rss_mean, rss_max = sampler.window()
            hits_before = target.hits
            time.sleep(1)
            rate = target.hits - hits_before
            api.post(f"/tests/{test['id']}/stop")
            wait_until(lambda: not dockerutil.of_test(dc, test["id"]), timeout=120, interval=1,
                       what="containers removed")  # fmt: skip
    finally:
        dockerutil.remove_tests(dc, test_ids)
        dc.close()
    return {"cpu": cpu, "rss_mean": rss_mean, "rss_max": rss_max, "containers": float(count), "rate": float(rate)}


def run(runs: int, quick: bool) -> Result:
    window = 30.0 if quick else 60.0
    got = repeat(runs, lambda i: _once(window))
    details = [
        f"run {i + 1}: {int(n)} containers running, target answered ~{r:.0f} requests/s"
        for i, (n, r) in enumerate(zip(got["containers"], got["rate"], strict=True))
    ]
    return Result(
        figure="agent_jmeter", title=TITLE, target=TARGET, method=METHOD + f" Window: {window:.0f} s per run.",
        metrics=[
            Metric("containers running", "", got["containers"], WANTED - 0.5, sense=">"),
            Metric("RSS, highest reading", "MB", got["rss_max"], 60.0),
            Metric("RSS, mean", "MB", got["rss_mean"]),
            Metric("CPU", "% of one core", got["cpu"], 2.0),
        ],
        details=details,
    )  # fmt: skip
