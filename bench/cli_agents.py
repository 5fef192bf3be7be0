"""Figure: ``octotui agents --json`` against a local server, wall clock (issue 15 part 1)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench.common import Metric, Result, percentile, running_agent, scratch, server_with_provider, wait_online

TITLE = "`octotui agents --json` against a local server"
TARGET = "< 0.3 s"
METHOD = """a real server on loopback with one real agent online; the `octotui` console script of the
venv runs `agents --json --server URL --token T` as an operator's shell would (a new process each
time, stdout to a pipe), the wall clock taken around `subprocess.run`, Python's start-up and imports
included. Beside it, for context: `octotui agents` (the table: the client and the contract's models
are imported), `octotui --version`, and `python -c pass` (the interpreter alone)."""

OCTOTUI = str(Path(sys.executable).with_name("octotui"))


def _wall(argv: list[str], env: dict[str, str], cpu: list[float] | None = None) -> float:
    """Wall clock of one run; its CPU time (user + system, which a loaded machine inflates far less
    than the wall clock) appended to ``cpu``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    took = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise AssertionError(f"{argv}: exit {done.returncode}: {done.stderr}")
    if cpu is not None:
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return took


def _once(samples: int) -> dict[str, list[float]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCTOTUI_")}
    out: dict[str, list[float]] = {"json": [], "json_cpu": [], "table": [], "version": [], "python": []}
    with (
        scratch("cli") as tmp,
        server_with_provider(tmp) as (server, api, provider),
        running_agent(server, provider["token"], tmp, "cli-agent"),
    ):
        wait_online(api, "cli-agent")
        remote = ["--server", server.url, "--token", server.admin_token]
        for _ in range(samples):
            out["json"].append(_wall([OCTOTUI, "agents", "--json", *remote], env, out["json_cpu"]))
            out["table"].append(_wall([OCTOTUI, "agents", *remote], env))
            out["version"].append(_wall([OCTOTUI, "--version"], env))
            out["python"].append(_wall([sys.executable, "-c", "pass"], env))
    return out


def run(runs: int, quick: bool) -> Result:
    samples = 3 if quick else 10
    figures: dict[str, list[float]] = {"json": [], "json_worst": [], "json_cpu": [], "table": [], "version": [],
                                       "python": []}  # fmt: skip
    details = []
    for i in range(runs):
        got = _once(samples)
        for key in ("json", "json_cpu", "table", "version", "python"):
            figures[key].append(percentile(got[key], 50))
        figures["json_worst"].append(max(got["json"]))
        details.append(f"run {i + 1}: agents --json " + ", ".join(f"{v:.3f}" for v in got["json"]) + " s")
    return Result(
        figure="cli_agents", title=TITLE, target=TARGET, method=METHOD + f" {samples} invocations per run.",
        metrics=[Metric("agents --json, median of the run", "s", figures["json"], 0.3),
                 Metric("agents --json, slowest of the run", "s", figures["json_worst"]),
                 Metric("agents --json, CPU time (user + system), median", "s", figures["json_cpu"]),
                 Metric("agents (table), median", "s", figures["table"]),
                 Metric("--version, median", "s", figures["version"]),
                 Metric("python -c pass, median", "s", figures["python"])],
        details=details,
    )  # fmt: skip


if __name__ == "__main__":  # python -m bench.cli_agents [--quick]: measure and print, write nothing
    result = run(runs=1 if "--quick" in sys.argv else 3, quick="--quick" in sys.argv)
    for m in result.metrics:
        lo, hi = m.spread
        print(f"{m.name}: median {m.median:.3f} {m.unit} (runs {lo:.3f}..{hi:.3f})")
    print("\n".join(result.details))
