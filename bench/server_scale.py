"""Figure 5: agents per server process: heartbeat latency, server CPU and RSS at 1,000 → 5,000 agents."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import PROFILES, ROOT, Metric, Result, Sampler, scratch, server_with_provider

TITLE = "Agents per server process"
TARGET = "5,000 agents heartbeating every 5 s with p99 < 100 ms, long polls open"
STEPS = (1000, 2500, 5000)
METHOD = """the real server process (`python -m octotui server --heartbeat-interval 5`, uvloop);
simulated agents in a separate process (`python -m bench.simagents`: raw asyncio streams, HTTP/1.1
by hand, keep-alive, uvloop) register with the provider token, then each sends a heartbeat every
5 s (random first offset, ±0.1 s jitter; the latest host sample plus 4 earlier ones, 8 cores, as the
real agent sends them) and keeps a long poll open (two sockets per agent). Steps of 1,000, 2,500
and 5,000 agents; each step is measured after a 10 s warm-up. Latency is measured client-side
(request written → answer read); the client's own event-loop lag is recorded to tell its delays from
the server's. Server CPU (% of one core) and RSS by psutil on its pid over the same window."""


#: BENCH_PROFILE=1: py-spy records the server during the last step into $TMPDIR/octotui-bench-profiles/
PROFILE = bool(os.environ.get("BENCH_PROFILE"))
#: BENCH_WHATIF=async-deps: the same server with its dependencies made async (bench/whatif_async_deps.py)
WHATIF = os.environ.get("BENCH_WHATIF") == "async-deps"


def _profile(pid: int, seconds: float) -> subprocess.Popen[bytes]:
    PROFILES.mkdir(parents=True, exist_ok=True)
    out = PROFILES / "server_scale.pyspy.txt"
    spy = Path(sys.executable).parent / "py-spy"
    return subprocess.Popen(
        [str(spy), "record", "--format", "raw", "-o", str(out), "-d", str(int(seconds)), "-r", "50", "-p", str(pid)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _once(window: float, warmup: float) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with scratch("scale") as tmp, server_with_provider(tmp, "--heartbeat-interval", "5") as (server, _, provider):
        assert server.proc is not None
        budget = 120 + len(STEPS) * (window + warmup + 60)
        cmd = [
            sys.executable, "-m", "bench.simagents", "--url", server.url, "--token", provider["token"],
            "--steps", ",".join(map(str, STEPS)), "--warmup", str(warmup), "--window", str(window),
            "--max-seconds", str(budget),
        ]  # fmt: skip
        profiler: subprocess.Popen[bytes] | None = None
        with Sampler(server.proc.pid, 0.5) as sampler:
            load = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
            try:
                assert load.stdout is not None
                deadline = time.monotonic() + budget + 60
                for line in load.stdout:
                    event = json.loads(line)
                    if event["event"] == "step":
                        cpu, _, rss_max = sampler.window(event["t0"], event["t1"])
                        event.update(server_cpu=cpu, server_rss_mb=rss_max, load1=os.getloadavg()[0])
                        out.append(event)
                        print(f"   step {event['agents']}: p50 {event['p50_ms']:.1f} ms p99 {event['p99_ms']:.1f} ms "
                              f"cpu {cpu:.0f} % rss {rss_max:.0f} MB errors {event['errors']} "
                              f"client lag p99 {event['client_lag_p99_ms']:.1f} ms", flush=True)  # fmt: skip
                        if event.get("wanted", event["agents"]) == STEPS[-1]:
                            break
                    elif event["event"] == "registered":
                        print(f"   registered {event['agents']} in {event['register_s']} s", flush=True)
                        if PROFILE and event["agents"] == STEPS[-1]:
                            profiler = _profile(server.proc.pid, warmup + window)
                    if time.monotonic() > deadline:
                        break
            finally:
                if profiler is not None:
                    profiler.wait(timeout=window + warmup + 60)
                if load.poll() is None:
                    load.terminate()
                load.wait(timeout=30)
    return out


def run(runs: int, quick: bool) -> Result:
    window, warmup = (20.0, 8.0) if quick else (45.0, 10.0)
    per_step: dict[int, dict[str, list[float]]] = {n: {} for n in STEPS}
    details = []
    for i in range(runs):
        for event in _once(window, warmup):
            values = per_step.setdefault(event.get("wanted", event["agents"]), {})
            for key in ("p50_ms", "p99_ms", "max_ms", "server_cpu", "server_rss_mb", "errors", "client_lag_p99_ms"):
                values.setdefault(key, []).append(float(event[key]))
            # CPU per heartbeat handled (long polls included): independent of how busy the machine is,
            # so it tells the capacity of one core: 1,000 heartbeats/s at 5,000 agents.
            hb_rate = event["heartbeats"] / (event["t1"] - event["t0"])
            values.setdefault("served", []).append(hb_rate)
            values.setdefault("cpu_ms", []).append(event["server_cpu"] * 10 / hb_rate if hb_rate else float("nan"))
            values.setdefault("load", []).append(float(event.get("load1", float("nan"))))
            details.append(
                f"run {i + 1}, {event['agents']} agents: {event['heartbeats']} heartbeats, "
                f"p50 {event['p50_ms']:.1f} ms, "
                f"p90 {event['p90_ms']:.1f} ms, p99 {event['p99_ms']:.1f} ms, max {event['max_ms']:.0f} ms, "
                f"server CPU {event['server_cpu']:.0f} %, RSS {event['server_rss_mb']:.0f} MB, "
                f"errors {event['errors']}, reconnects {event['reconnects']}, "
                f"client loop lag p99 {event['client_lag_p99_ms']:.1f} ms, "
                f"machine load average (1 min) {event.get('load1', float('nan')):.1f}"
            )
    metrics = []
    for n in STEPS:
        v = per_step[n]
        if not v:
            continue
        target = 100.0 if n == 5000 else None
        metrics += [
            Metric(f"{n:,} agents: heartbeat p99", "ms", v["p99_ms"], target),
            Metric(f"{n:,} agents: heartbeat p50", "ms", v["p50_ms"]),
            Metric(f"{n:,} agents: server CPU", "% of one core", v["server_cpu"]),
            Metric(
                f"{n:,} agents: heartbeats answered", "per s", v["served"], n / 5 * 0.98 if n == 5000 else None, ">"
            ),
            Metric(f"{n:,} agents: server CPU per heartbeat", "ms", v["cpu_ms"]),
            Metric(f"{n:,} agents: server RSS", "MB", v["server_rss_mb"]),
            Metric(f"{n:,} agents: failed heartbeats", "", v["errors"], 1.0 if n == 5000 else None),
        ]
    return Result(
        figure="server_scale" + ("_whatif_async_deps" if WHATIF else ""),
        title=TITLE + (" - what-if: route dependencies made async (not the product)" if WHATIF else ""), target=TARGET,
        method=METHOD + f" Window: {window:.0f} s per step.", metrics=metrics, details=details,
    )  # fmt: skip
