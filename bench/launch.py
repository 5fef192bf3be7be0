"""Figure 3: launch → container running, local agent, image present."""

from __future__ import annotations

import threading
import time

from bench import dockerutil
from bench.common import (
    JMETER_IMAGE,
    PLAN,
    Metric,
    Result,
    percentile,
    running_agent,
    scratch,
    server_with_provider,
    wait_online,
    wait_until,
)  # fmt: skip
from tests.support.httptarget import HttpTarget

TITLE = "Launch → container running (local agent, image present)"
TARGET = "< 1 s"
METHOD = f"""a real server (5 s heartbeats), a real agent on this machine with the Docker engine, the
JMeter image `{JMETER_IMAGE}` present, and the tests' HTTP target on 127.0.0.1. Each sample is a
one-container test created by `POST /tests` (users=1, think_ms=200); t0 is taken just before the
POST. Three instants follow: the container's `State.StartedAt` as Docker records it (polled every
20 ms by label), the first time `GET /tests/ID` shows the container `running` (polled every 50 ms),
and the POST's answer. The test is then stopped and its container removed before the next sample."""


def _sample(api, provider, target: HttpTarget, dc) -> tuple[float, float, list[str]]:  # type: ignore[no-untyped-def]
    spec = {
        "name": "launch-probe", "plan": PLAN, "provider": provider["id"], "containers": 1, "image": JMETER_IMAGE,
        "users": 1, "duration": 120,
        "properties": {"host": "127.0.0.1", "port": str(target.port), "path": "/", "think_ms": "200"},
    }  # fmt: skip
    t0 = time.time()
    response = api.post("/tests", json=spec)
    response.raise_for_status()
    test_id = response.json()["id"]
    seen_running: list[float] = []

    def watch_server() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            t = api.get(f"/tests/{test_id}").json()
            if any(c["state"] == "running" for c in t["containers"]):
                seen_running.append(time.time())
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=watch_server, daemon=True)
    watcher.start()
    started = wait_until(
        dockerutil.first_start(dc, test_id),
        timeout=30, interval=0.02, what="container started",
    )  # fmt: skip
    watcher.join(timeout=35)
    api.post(f"/tests/{test_id}/stop")
    server_s = (seen_running[0] - t0) if seen_running else float("nan")
    return started - t0, server_s, [test_id]


def _once(samples: int) -> dict[str, list[float]]:
    dc = dockerutil.client()
    tests: list[str] = []
    docker_s: list[float] = []
    server_s: list[float] = []
    try:
        with (
            scratch("launch") as tmp,
            HttpTarget() as target,
            server_with_provider(tmp) as (server, api, provider),
            running_agent(server, provider["token"], tmp, "launch-agent"),
        ):
            wait_online(api, "launch-agent", docker=True)
            for _ in range(samples):
                d, s, ids = _sample(api, provider, target, dc)
                tests += ids
                docker_s.append(d)
                server_s.append(s)
                wait_until(dockerutil.containers_gone(dc, ids[0]), timeout=60, what="container removed")
    finally:
        dockerutil.remove_tests(dc, tests)
        dc.close()
    return {"docker": docker_s, "server": server_s}


def run(runs: int, quick: bool) -> Result:
    samples = 3 if quick else 5
    d50, dmax, s50, smax, details = [], [], [], [], []
    for i in range(runs):
        got = _once(samples)
        d50.append(percentile(got["docker"], 50))
        dmax.append(max(got["docker"]))
        s50.append(percentile(got["server"], 50))
        smax.append(max(got["server"]))
        details.append(
            f"run {i + 1}: POST → Docker StartedAt "
            + ", ".join(f"{v:.2f}" for v in got["docker"])
            + " s; POST → server shows running "
            + ", ".join(f"{v:.2f}" for v in got["server"])
            + " s"
        )
    return Result(
        figure="launch", title=TITLE, target=TARGET, method=METHOD + f" {samples} launches per run.",
        metrics=[
            Metric("POST → container started (Docker), median of the run", "s", d50, 1.0),
            Metric("POST → container started (Docker), slowest of the run", "s", dmax),
            Metric("POST → server shows it running, median of the run", "s", s50, 1.0),
            Metric("POST → server shows it running, slowest of the run", "s", smax),
        ],
        details=details,
    )  # fmt: skip
