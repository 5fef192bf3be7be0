"""Figure 7: bytes a steady dashboard writes to its terminal, at 80x24 and 200x50."""

from __future__ import annotations

from bench.common import Metric, Result, running_agent, scratch, server_with_provider, wait_online
from bench.pty_run import run_dashboard

TITLE = "Terminal output of a steady dashboard"
TARGET = "< 20 KiB/s at 80x24 and at 200x50"
SIZES = ((80, 24), (200, 50))
METHOD = """a real server (5 s heartbeats) with one real agent online (1 s sampling); the real
`octotui --server URL --token T` runs on a pseudo-terminal (`pty.fork`, TERM=xterm-256color,
COLORTERM unset) of the given size, on its main screen, refreshing at 1 Hz; every byte read from
the pty master is counted, from 5 s after the start (the first frames are left out) for the window."""


def _once(cols: int, rows: int, window: float) -> dict[str, float]:
    with (
        scratch("tty") as tmp,
        server_with_provider(tmp) as (server, api, provider),
        running_agent(server, provider["token"], tmp, "tty-agent"),
    ):
        wait_online(api, "tty-agent")
        run = run_dashboard(server.url, server.admin_token, cols, rows, 5 + window, needle=b"tty-agent")
    if run.found_at is None:
        raise AssertionError("the dashboard never showed the agent")
    return {"rate": run.bytes_between(5, 5 + window) / window / 1024, "first": run.bytes_between(0, 5) / 1024}


def run(runs: int, quick: bool) -> Result:
    window = 15.0 if quick else 30.0
    metrics, details = [], []
    for cols, rows in SIZES:
        rates, firsts = [], []
        for _ in range(runs):
            got = _once(cols, rows, window)
            rates.append(got["rate"])
            firsts.append(got["first"])
        metrics.append(Metric(f"{cols}x{rows}, steady", "KiB/s", rates, 20.0))
        details.append(f"{cols}x{rows}: first 5 s wrote " + ", ".join(f"{v:.1f}" for v in firsts) + " KiB per run")
    return Result(
        figure="terminal_output", title=TITLE, target=TARGET, method=METHOD + f" Window: {window:.0f} s per run.",
        metrics=metrics, details=details,
    )  # fmt: skip
