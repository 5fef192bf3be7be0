"""Figure: the dashboard on a running test of 200 labels whose figures change every second, at 1 Hz."""

from __future__ import annotations

import json
import random
import threading
import time
from typing import Any

from bench.common import Metric, Result, Sampler, repeat, run_python, scratch
from octotui.protocol import rt_bucket
from tests.support.processes import ServerProcess
from tests.support.wireagent import running_test

TITLE = "Dashboard on a 200-label test at 1 Hz"
TARGET = "< 15 % of one core"
LABELS = 200
METHOD = f"""a real `octotui server` process; a wire-level agent (`tests.support.wireagent`, in the
suite's process) runs one test of one container and heartbeats every second with all {LABELS}
labels' cumulative figures (samples, errors, sums, min/max, a histogram of ~30-60 buckets each,
error counts by code), every label changed each second (~20 samples/s each, 4,000/s in all). The
real app (`octotui.tui.app.create_app`, `run_test(size=(200, 50))`, 1 s refresh) runs headless in
a process of its own (`bench.dashboard_probe --test-id`): the test's screen is pushed and its
labels pane shown; once it holds {LABELS} rows and 5 s have passed, the process's CPU time
(`time.process_time`: fetching the test, its series, labels and errors each second, parsing,
rendering) over the window is divided by the wall time. Label updates received and poll rounds in
the window tell whether it kept 1 Hz; the labels' samples at the start and end of the window that
the figures moved."""


class _Labels:
    """Cumulative figures of ``LABELS`` labels, moved on by about a second of samples per call."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.start = time.time()
        self.figures: list[dict[str, Any]] = []
        for k in range(LABELS):
            self.figures.append({
                "label": f"T{k:03d} GET /api/resource/{k}", "samples": 0, "errors": 0, "sum_ms": 0.0,
                "min_ms": None, "max_ms": None, "bytes_received": 0, "bytes_sent": 0,
                "first_ts": self.start, "last_ts": self.start, "histogram": {},
            })  # fmt: skip
        self.errors: dict[tuple[str, str], int] = {}

    def step(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        now = time.time()
        for k, f in enumerate(self.figures):
            median = 20.0 + 380.0 * k / LABELS
            n = self.rng.randint(15, 25)
            hist = f["histogram"]
            for _ in range(n):
                ms = max(1.0, self.rng.lognormvariate(0.0, 0.5) * median)
                b = str(rt_bucket(ms))
                hist[b] = hist.get(b, 0) + 1
                f["sum_ms"] += ms
                f["min_ms"] = ms if f["min_ms"] is None else min(f["min_ms"], ms)
                f["max_ms"] = ms if f["max_ms"] is None else max(f["max_ms"], ms)
            f["samples"] += n
            f["bytes_received"] += 2048 * n
            f["bytes_sent"] += 256 * n
            f["last_ts"] = now
            if self.rng.random() < 0.1:
                f["errors"] += 1
                key = (f["label"], self.rng.choice(("500", "503")))
                self.errors[key] = self.errors.get(key, 0) + 1
        errors = [
            {"label": label, "code": code, "message": "Internal Server Error" if code == "500" else "Unavailable",
             "count": count}
            for (label, code), count in self.errors.items()
        ]  # fmt: skip
        return [dict(f, histogram=dict(f["histogram"])) for f in self.figures], errors


def _once(window: float, seed: int) -> dict[str, float]:
    with scratch("labels") as tmp:
        server = ServerProcess(tmp / "server", "--log-level", "warning").start()
        stop = threading.Event()
        try:
            assert server.proc is not None
            agent, report = running_test(server, name="two-hundred-labels")
            labels = _Labels(seed)
            beats: list[float] = []

            def beat_every_second() -> None:
                next_at = time.monotonic()
                while not stop.is_set():
                    stats, errors = labels.step()
                    started = time.monotonic()
                    agent.beat({**report, "labels": stats, "errors": errors,
                                "figures": {"samples": sum(s["samples"] for s in stats), "errors": 0, "rate": 4000.0,
                                            "avg_ms": 200.0, "min_ms": 1, "max_ms": 900, "active": 200}})  # fmt: skip
                    beats.append(time.monotonic() - started)
                    next_at += 1.0
                    stop.wait(max(0.0, next_at - time.monotonic()))

            beater = threading.Thread(target=beat_every_second, daemon=True)
            beater.start()
            with Sampler(server.proc.pid) as sampler:
                probe = ["-m", "bench.dashboard_probe", server.url, server.admin_token, "--seconds", str(window),
                         "--test-id", report["test_id"], "--labels", str(LABELS)]  # fmt: skip
                done = run_python(probe, timeout=window + 240)
            stop.set()
            beater.join(timeout=15)
            agent.close()
            if done.returncode != 0:
                raise AssertionError(f"dashboard probe failed: {done.stderr[-3000:]}")
            got = json.loads(done.stdout.strip().splitlines()[-1])
            server_cpu, _, _ = sampler.window()
        finally:
            stop.set()
            server.stop()
    if got["rows"] != LABELS or got["samples_end"] <= got["samples_start"]:
        raise AssertionError(f"the labels pane did not follow the test: {got}")
    return {
        "cpu": got["cpu_s"] / got["wall_s"] * 100, "rounds_per_s": got["rounds"] / got["wall_s"],
        "updates_per_s": got["label_updates"] / got["wall_s"], "rows": got["rows"], "server_cpu": server_cpu,
        "beat_ms": 1000 * sorted(beats)[len(beats) // 2] if beats else float("nan"),
    }  # fmt: skip


def run(runs: int, quick: bool) -> Result:
    window = 20.0 if quick else 30.0
    got = repeat(runs, lambda i: _once(window, i))
    details = [
        f"run {i + 1}: labels pane held {int(n)} rows; {u:.2f} label updates/s, {r:.2f} poll rounds/s; "
        f"server meanwhile {s:.0f} % of one core, heartbeat of {LABELS} labels answered in {b:.0f} ms (median)"
        for i, (n, u, r, s, b) in enumerate(
            zip(got["rows"], got["updates_per_s"], got["rounds_per_s"], got["server_cpu"], got["beat_ms"], strict=True)
        )
    ]
    return Result(
        figure="dashboard_labels", title=TITLE, target=TARGET, method=METHOD + f" Window: {window:.0f} s per run.",
        metrics=[
            Metric("dashboard CPU", "% of one core", got["cpu"], 15.0),
            Metric("label updates received", "per s", got["updates_per_s"], 0.95, sense=">"),
            Metric("server CPU meanwhile", "% of one core", got["server_cpu"]),
        ],
        details=details,
    )  # fmt: skip
