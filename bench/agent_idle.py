"""Figure 1: the agent's footprint when idle (1 s host sampling, 5 s heartbeats, a long poll open)."""

from __future__ import annotations

import time

from bench.common import Metric, Result, Sampler, repeat, watched_agent

TITLE = "Agent, idle"
TARGET = "< 45 MB RSS, < 0.5 % of one core"
METHOD = """a real `octotui server` (5 s heartbeats) and a real `octotui-agent` (1 s sampling, Docker
engine present, no container); once the agent is online and 5 s have passed, psutil reads the
agent's pid (and any child) every second for the window; CPU % is CPU time used over wall time,
RSS the mean and the highest reading."""


def _once(window: float) -> dict[str, float]:
    with watched_agent("idle", "idle-agent") as (_, _, _, pid):
        with Sampler(pid) as sampler:
            time.sleep(window)
        cpu, rss_mean, rss_max = sampler.window()
    return {"cpu": cpu, "rss_mean": rss_mean, "rss_max": rss_max}


def run(runs: int, quick: bool) -> Result:
    window = 30.0 if quick else 60.0
    got = repeat(runs, lambda i: _once(window))
    return Result(
        figure="agent_idle",
        title=TITLE,
        target=TARGET,
        method=METHOD + f" Window: {window:.0f} s per run.",
        metrics=[
            Metric("RSS, highest reading", "MB", got["rss_max"], 45.0),
            Metric("RSS, mean", "MB", got["rss_mean"]),
            Metric("CPU", "% of one core", got["cpu"], 0.5),
        ],
    )
