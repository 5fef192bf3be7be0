"""Figure 8: dashboard start → first full frame, remote server."""

from __future__ import annotations

from bench.common import Metric, Result, percentile, running_agent, scratch, server_with_provider, wait_online
from bench.pty_run import run_dashboard

TITLE = "Dashboard start → first full frame (remote server)"
TARGET = "< 1 s"
METHOD = """a real server on loopback (the dashboard's "remote" mode: `--server URL --token T`) with
one real agent online; the real `octotui` starts on a 200x50 pseudo-terminal and the time runs from
just before `pty.fork` to the moment the agent's name first appears in the bytes read from the pty
master, i.e. the agents table is drawn with the server's data. Includes Python's start-up and
imports: it is what an operator waits for."""


def _once(samples: int) -> list[float]:
    out = []
    with (
        scratch("frame") as tmp,
        server_with_provider(tmp) as (server, api, provider),
        running_agent(server, provider["token"], tmp, "frame-agent"),
    ):
        wait_online(api, "frame-agent")
        for _ in range(samples):
            run = run_dashboard(server.url, server.admin_token, 200, 50, 15, needle=b"frame-agent", stop_on_needle=True)
            if run.found_at is None:
                raise AssertionError("the agent did not appear within 15 s")
            out.append(run.found_at)
    return out


def run(runs: int, quick: bool) -> Result:
    samples = 3 if quick else 5
    medians, worst, details = [], [], []
    for i in range(runs):
        got = _once(samples)
        medians.append(percentile(got, 50))
        worst.append(max(got))
        details.append(f"run {i + 1}: " + ", ".join(f"{v:.2f}" for v in got) + " s")
    return Result(
        figure="first_frame", title=TITLE, target=TARGET, method=METHOD + f" {samples} starts per run.",
        metrics=[Metric("start → agent shown, median of the run", "s", medians, 1.0),
                 Metric("start → agent shown, slowest of the run", "s", worst)],
        details=details,
    )  # fmt: skip
