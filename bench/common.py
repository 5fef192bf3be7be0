"""What every figure shares: the machine's description, real server and agent processes, process
sampling, statistics and the result record each figure returns."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.support.processes import AgentProcess, ServerProcess, free_port
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
#: Profiles (BENCH_PROFILE=1) are large and machine-specific: kept out of the repository.
PROFILES = Path(tempfile.gettempdir()) / "octotui-bench-profiles"
PLAN = (ROOT / "examples" / "http-get.jmx").read_text()
JMETER_IMAGE = os.environ.get("OCTOTUI_BENCH_JMETER_IMAGE", "octotui-jmeter:local")

__all__ = [
    "JMETER_IMAGE",
    "PLAN",
    "ROOT",
    "AgentProcess",
    "Metric",
    "Result",
    "Sampler",
    "ServerProcess",
    "free_port",
    "latency_runs",
    "machine",
    "percentile",
    "scratch",
    "server_with_provider",
    "standalone",
    "summarize",
    "wait_until",
    "watched_agent",
]  # fmt: skip


@dataclass
class Metric:
    """One measured figure: its value per run, the target, and whether the median meets it."""

    name: str
    unit: str
    runs: list[float]
    target: float | None = None
    #: "<" when the value must stay below the target, ">" when above.
    sense: str = "<"
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.runs) if self.runs else float("nan")

    @property
    def spread(self) -> tuple[float, float]:
        return (min(self.runs), max(self.runs)) if self.runs else (float("nan"), float("nan"))

    @property
    def met(self) -> bool | None:
        if self.target is None or not self.runs:
            return None
        return self.median < self.target if self.sense == "<" else self.median > self.target


@dataclass
class Result:
    """What one figure hands back: metrics (merged over runs by the suite) and free-form details."""

    figure: str
    title: str
    target: str
    method: str
    metrics: list[Metric] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    machine: dict[str, str] = field(default_factory=dict)
    date: str = ""
    runs: int = 0
    quick: bool = False

    def save(self) -> Path:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{self.figure}.json"
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: Path) -> Result:
        data = json.loads(path.read_text())
        data["metrics"] = [Metric(**m) for m in data.get("metrics", [])]
        return cls(**data)


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (0-100) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def summarize(values: list[float]) -> str:
    if not values:
        return "no samples"
    return (
        f"n={len(values)} p50={percentile(values, 50):.1f} p90={percentile(values, 90):.1f} "
        f"p99={percentile(values, 99):.1f} max={max(values):.1f}"
    )


def machine() -> dict[str, str]:
    """CPU model, cores, RAM, kernel, Python, and how busy the machine was when asked."""
    model = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()
    return {
        "cpu": model,
        "cores": str(psutil.cpu_count(logical=True)),
        "ram": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load average at start": f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
    }


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A temporary directory removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=f"octotui-bench-{prefix}-") as tmp:
        yield Path(tmp)


class WhatIfServer(ServerProcess):
    """The server run through ``bench.whatif_async_deps`` (BENCH_WHATIF=async-deps): a measured what-if."""

    def start(self) -> WhatIfServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", "bench.whatif_async_deps",
            "--data-dir", str(self.data_dir), "--host", "127.0.0.1", "--port", str(self.port),
            f"--admin-token={self.admin_token}", *self.extra,
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT)
        wait_until(self._healthy, timeout=30, what=f"what-if server on {self.url}")
        return self


@contextlib.contextmanager
def server_with_provider(
    tmp: Path, *extra: str, provider: str = "bench"
) -> Iterator[tuple[ServerProcess, httpx.Client, dict[str, Any]]]:
    """A real ``octotui server`` (default 5 s heartbeats unless ``extra`` says otherwise) and one provider."""
    server = (WhatIfServer if os.environ.get("BENCH_WHATIF") == "async-deps" else ServerProcess)(
        tmp / "server", "--log-level", "warning", *extra
    )
    server.start()
    try:
        api = server.client()
        response = api.post("/providers", json={"name": provider})
        response.raise_for_status()
        yield server, api, response.json()
        api.close()
    finally:
        server.stop()


@contextlib.contextmanager
def running_agent(server: ServerProcess, token: str, tmp: Path, name: str, *extra: str) -> Iterator[AgentProcess]:
    """A real ``octotui-agent`` process, stopped by pid at the end."""
    agent = AgentProcess(server.url, token, tmp / name, "local", name, "--log-level", "warning", *extra)
    agent.start()
    try:
        yield agent
    finally:
        agent.stop()


def wait_online(api: httpx.Client, name: str, docker: bool = False, timeout: float = 40) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        for a in api.get("/agents").json():
            if (
                a["name"] == name
                and a["status"] == "online"
                and (not docker or (a.get("docker") or {}).get("available"))
            ):
                return a  # type: ignore[no-any-return]
        return None

    return wait_until(ready, timeout=timeout, what=f"agent {name} online")  # type: ignore[no-any-return]


class Sampler:
    """Samples a process (and its children) every ``interval`` seconds in a thread: RSS and CPU time."""

    def __init__(self, pid: int, interval: float = 1.0) -> None:
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.points: list[tuple[float, float, float]] = []  # (monotonic, cpu seconds, rss bytes)
        self._stop = False
        import threading

        self._thread = threading.Thread(target=self._run, daemon=True)

    def _read(self) -> tuple[float, float, float]:
        cpu, rss = 0.0, 0.0
        procs = [self.proc]
        with contextlib.suppress(psutil.Error):
            procs += self.proc.children(recursive=True)
        for p in procs:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                cpu += t.user + t.system
                rss += p.memory_info().rss
        return time.monotonic(), cpu, rss

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop:
            self.points.append(self._read())
            next_at += self.interval
            time.sleep(max(0.0, next_at - time.monotonic()))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._thread.join(timeout=5)
        self.points.append(self._read())

    def window(self, start: float | None = None, end: float | None = None) -> tuple[float, float, float]:
        """(CPU % of one core, mean RSS MB, max RSS MB) between monotonic ``start`` and ``end``."""
        pts = [p for p in self.points if (start is None or p[0] >= start) and (end is None or p[0] <= end)]
        if len(pts) < 2:
            return float("nan"), float("nan"), float("nan")
        cpu = (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0]) * 100
        rss = [p[2] / 1e6 for p in pts]
        return cpu, statistics.mean(rss), max(rss)


def run_python(args: list[str], timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGS`` from the repository root, bounded; its stdout is the answer."""
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, check=False,
    )  # fmt: skip


def repeat(runs: int, once: Callable[[int], dict[str, float]]) -> dict[str, list[float]]:
    """Call ``once(i)`` ``runs`` times; gather each named value over the runs."""
    gathered: dict[str, list[float]] = {}
    for i in range(runs):
        for key, value in once(i).items():
            gathered.setdefault(key, []).append(value)
    return gathered


def latency_runs(runs: int, once: Callable[[int], list[float]]) -> tuple[dict[str, list[float]], list[list[float]]]:
    """Call ``once(i)`` ``runs`` times, each giving the samples of one run (ms): their p50, p99 and
    max per run (the figures' metrics hold one value per run), and the samples themselves."""
    samples = [once(i) for i in range(runs)]
    figures = {
        "p50": [percentile(q, 50) for q in samples],
        "p99": [percentile(q, 99) for q in samples],
        "max": [max(q) if q else float("nan") for q in samples],
    }
    return figures, samples


@contextlib.contextmanager
def watched_agent(
    prefix: str, name: str, docker: bool = True, settle: float = 5.0
) -> Iterator[tuple[Path, httpx.Client, str, int]]:
    """A real server and a real agent ``name``, online (with Docker seen unless ``docker`` is false)
    and left ``settle`` seconds: (scratch dir, admin client, agent id, agent pid), for a figure that
    samples the agent."""
    with (
        scratch(prefix) as tmp,
        server_with_provider(tmp) as (server, api, provider),
        running_agent(server, provider["token"], tmp, name) as agent,
    ):
        agent_id = wait_online(api, name, docker=docker)["id"]
        time.sleep(settle)
        assert agent.proc is not None
        yield tmp, api, str(agent_id), agent.proc.pid


def standalone(run: Callable[..., Result], argv: list[str] | None = None, doc: str | None = None) -> None:
    """``python -m bench.NAME`` for a figure: ``--runs N`` (3), ``--no-save``; prints the medians, and
    unless told not to keeps the result and rewrites docs/BENCHMARKS.md, as ``python -m bench`` does."""
    import argparse

    from bench.__main__ import FIGURES
    from bench.report import write_report

    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    info, date = machine(), now_iso()
    result = run(runs=args.runs, quick=False)
    result.machine, result.date, result.runs, result.quick = info, date, args.runs, False
    for m in result.metrics:
        print(f"{m.name}: median {m.median:.2f} {m.unit} (runs {', '.join(f'{x:.2f}' for x in m.runs)})")
    print("\n".join(result.details))
    if not args.no_save:
        result.save()
        print(f"report: {write_report(FIGURES, RESULTS)}")
