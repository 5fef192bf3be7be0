"""Figure 6: the dashboard's CPU with 1,000 agents and 5,000 running containers, refreshing at 1 Hz."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from bench.common import (
    PLAN,
    PROFILES,
    ROOT,
    Metric,
    Result,
    Sampler,
    repeat,
    run_python,
    scratch,
    server_with_provider,
    wait_until,
)

TITLE = "Dashboard with 1,000 agents and 5,000 containers at 1 Hz"
TARGET = "< 15 % of one core"
AGENTS, CONTAINERS, PER_TEST = 1000, 5000, 1000
METHOD = f"""a real server; {AGENTS:,} simulated agents (`bench.simagents`, a separate process) heartbeat
every 5 s and take the launch commands of {CONTAINERS // PER_TEST} tests of {PER_TEST:,} containers
created through `POST /tests`, acknowledge them and report every container `running` with live
JMeter figures, so the server holds {AGENTS:,} agents and {CONTAINERS:,} running containers. The real
app (`octotui.tui.app.create_app`, `run_test(size=(200, 50))`, 1 s refresh) then runs headless in a
process of its own (`bench.dashboard_probe`) on the main screen; after a 5 s warm-up, its CPU time
(`time.process_time`, everything the process does: fetching, parsing, rendering) over the window is
divided by the wall time. Poll rounds completed in the window tell whether it kept 1 Hz."""


def _once(window: float) -> dict[str, float]:
    with scratch("dash") as tmp, server_with_provider(tmp, "--heartbeat-interval", "5") as (server, api, provider):
        assert server.proc is not None
        cmd = [sys.executable, "-m", "bench.simagents", "--url", server.url, "--token", provider["token"],
               "--steps", str(AGENTS), "--warmup", "6", "--hold", "--max-seconds", "900"]  # fmt: skip
        load = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            assert load.stdout is not None
            for line in load.stdout:
                if json.loads(line)["event"] == "ready":
                    break
            for i in range(CONTAINERS // PER_TEST):
                spec = {"name": f"fleet-{i}", "plan": PLAN, "provider": provider["id"], "containers": PER_TEST,
                        "image": "octotui-jmeter:local", "users": 1, "duration": 3600}  # fmt: skip
                api.post("/tests", json=spec, timeout=60).raise_for_status()

            def running() -> bool:
                tests = api.get("/tests", timeout=60).json()
                return int(sum(c["state"] == "running" for t in tests for c in t["containers"])) >= CONTAINERS

            wait_until(running, timeout=120, interval=2, what=f"{CONTAINERS} containers running")
            with Sampler(server.proc.pid) as sampler:
                env = (
                    {"BENCH_PROFILE_OUT": str(PROFILES / "dashboard_load.pyinstrument.txt")}
                    if os.environ.get("BENCH_PROFILE")
                    else {}
                )
                probe = ["-m", "bench.dashboard_probe", server.url, server.admin_token, "--seconds", str(window)]
                done = run_python(probe, timeout=window + 240, env=env)
            if done.returncode != 0:
                raise AssertionError(f"dashboard probe failed: {done.stderr[-3000:]}")
            got = json.loads(done.stdout.strip().splitlines()[-1])
            server_cpu, _, server_rss = sampler.window()
        finally:
            load.terminate()
            load.wait(timeout=60)
    return {
        "cpu": got["cpu_s"] / got["wall_s"] * 100, "rounds_per_s": got["rounds"] / got["wall_s"],
        "agents": got["agents"], "containers": got["containers"], "server_cpu": server_cpu, "server_rss": server_rss,
    }  # fmt: skip


def run(runs: int, quick: bool) -> Result:
    window = 20.0 if quick else 30.0
    started = time.monotonic()
    got = repeat(runs, lambda i: _once(window))
    details = [
        f"run {i + 1}: dashboard held {int(a)} agents and {int(c)} containers; {r:.2f} poll rounds/s; "
        f"server meanwhile {s:.0f} % of one core"
        for i, (a, c, r, s) in enumerate(
            zip(got["agents"], got["containers"], got["rounds_per_s"], got["server_cpu"], strict=True)
        )
    ]
    _ = started
    return Result(
        figure="dashboard_load", title=TITLE, target=TARGET, method=METHOD + f" Window: {window:.0f} s per run.",
        metrics=[
            Metric("dashboard CPU", "% of one core", got["cpu"], 15.0),
            Metric("refresh rounds completed", "per s", got["rounds_per_s"], 0.95, sense=">"),
            Metric("server CPU meanwhile", "% of one core", got["server_cpu"]),
        ],
        details=details,
    )  # fmt: skip
