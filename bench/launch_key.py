"""Figure 3b: launch key → container running, the dashboard's own dialog driven by Pilot."""

from __future__ import annotations

import json
import time

from bench import dockerutil
from bench.common import (
    JMETER_IMAGE,
    ROOT,
    Metric,
    Result,
    percentile,
    run_python,
    running_agent,
    scratch,
    server_with_provider,
    wait_online,
    wait_until,
)
from tests.support.httptarget import HttpTarget

TITLE = "Launch key → container running (dashboard, local agent, image present)"
TARGET = "< 1 s"
METHOD = f"""as the launch figure, but the launch is the operator's: the real dashboard runs
headless (`run_test`, 200x50) in a process of its own (`bench.launch_key_probe`), opens the launch
dialog (l), fills it (plan `examples/http-get.jmx`, image `{JMETER_IMAGE}`, 1 container, users=1,
think_ms=200), previews the placement (enter) and presses ctrl+l; t0 is the wall time just before
that key press. Measured: to the container's Docker `State.StartedAt`, and to the moment the
dashboard's own data (its 1 Hz poll) first shows the container running."""


def _once(samples: int) -> dict[str, list[float]]:
    dc = dockerutil.client()
    tests: list[str] = []
    docker_s: list[float] = []
    shown_s: list[float] = []
    try:
        with (
            scratch("key") as tmp,
            HttpTarget() as target,
            server_with_provider(tmp) as (server, api, provider),
            running_agent(server, provider["token"], tmp, "key-agent"),
        ):
            wait_online(api, "key-agent", docker=True)
            plan = str(ROOT / "examples" / "http-get.jmx")
            for _ in range(samples):
                args = ["-m", "bench.launch_key_probe", server.url, server.admin_token, plan, JMETER_IMAGE]
                done = run_python([*args, str(target.port)], timeout=120)
                if done.returncode != 0:
                    raise AssertionError(f"launch probe failed: {done.stderr[-3000:]}")
                got = json.loads(done.stdout.strip().splitlines()[-1])
                test = next(t for t in api.get("/tests").json() if t["name"] == got["name"])
                tests.append(test["id"])
                started = wait_until(
                    dockerutil.first_start(dc, test["id"]), timeout=30, interval=0.1, what="container started"
                )
                docker_s.append(started - got["pressed"])
                shown_s.append((got["shown"] - got["pressed"]) if got["shown"] else float("nan"))
                api.post(f"/tests/{test['id']}/stop")
                wait_until(dockerutil.containers_gone(dc, test["id"]), timeout=60, what="container removed")
                time.sleep(1)
    finally:
        dockerutil.remove_tests(dc, tests)
        dc.close()
    return {"docker": docker_s, "shown": shown_s}


def run(runs: int, quick: bool) -> Result:
    samples = 2 if quick else 3
    d50, s50, details = [], [], []
    for i in range(runs):
        got = _once(samples)
        d50.append(percentile(got["docker"], 50))
        s50.append(percentile(got["shown"], 50))
        details.append(
            f"run {i + 1}: ctrl+l → Docker StartedAt "
            + ", ".join(f"{v:.2f}" for v in got["docker"])
            + " s; ctrl+l → dashboard shows running "
            + ", ".join(f"{v:.2f}" for v in got["shown"])
            + " s"
        )
    return Result(
        figure="launch_key",
        title=TITLE,
        target=TARGET,
        method=METHOD + f" {samples} launches per run.",
        metrics=[
            Metric("ctrl+l → container started (Docker), median of the run", "s", d50, 1.0),
            Metric("ctrl+l → dashboard shows it running, median of the run", "s", s50, 1.0),
        ],
        details=details,
    )
