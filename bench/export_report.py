"""Figure: the HTML report of a 1,000,000-sample test, built by the real app (issue 12, part 5).

Run alone: ``python -m bench.export_report [--labels 50,200] [--runs 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import Metric, Result
from octotui.protocol import rt_bucket
from octotui.server.app import create_app
from octotui.server.settings import ServerSettings
from tests.support import wire

TITLE = "HTML report of a 1,000,000-sample test (50 and 200 labels)"
TARGET = "< 2 s (50 labels)"
SAMPLES = 1_000_000
CONTAINERS = 10
POINTS = 3600
METHOD = f"""the real app in process (httpx.ASGITransport, lifespan included); {CONTAINERS} wire-level
agents each report one container of one test: N labels sharing {SAMPLES:,} samples, each label's
response times log-normal (median 40-400 ms, a tail past 5 s: a few hundred histogram buckets per
label and container), 2 % errors over 3 codes; the test ends, its labels are stored and leave memory,
and its series holds {POINTS} points (an hour at 1 s). Timed: GET /tests/{{id}}/export/report.html,
from the request to the last byte (labels read from the store, merged over containers, a TOTAL
merged over every label, the page rendered). The stats.csv and junit.xml exports are timed beside it."""

ADMIN = "bench-admin"


def _label(rng: random.Random, name: str, n: int, median_ms: float, t0: float) -> tuple[dict[str, Any], list[Any]]:
    hist: dict[str, int] = {}
    total = 0.0
    lo, hi = float("inf"), 0.0
    for _ in range(n):
        ms = max(1.0, rng.lognormvariate(0.0, 0.6) * median_ms)
        total += ms
        lo, hi = min(lo, ms), max(hi, ms)
        b = str(rt_bucket(ms))
        hist[b] = hist.get(b, 0) + 1
    errors = n // 50
    stats = {"label": name, "samples": n, "errors": errors, "sum_ms": total, "min_ms": lo, "max_ms": hi,
             "bytes_received": n * 3000, "bytes_sent": n * 400, "first_ts": t0, "last_ts": t0 + 3600.0,
             "histogram": hist}  # fmt: skip
    codes = [("500", "Internal Server Error"), ("503", "Service Unavailable"), ("Non HTTP", "java.net.SocketException")]
    errs = [{"label": name, "code": c, "message": m, "count": errors // 3} for c, m in codes]
    return stats, errs


async def _world(labels: int, data_dir: Path) -> tuple[float, float, float, int]:
    settings = ServerSettings(data_dir=data_dir, admin_token=ADMIN, heartbeat_interval=0.5, flush_interval=0.05)
    app = create_app(settings)
    rng = random.Random(labels)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench/api/v1", headers=wire.bearer(ADMIN)
        ) as http,
    ):
        p = (await http.post("/providers", json={"name": "local"})).json()
        agents = []
        for i in range(CONTAINERS):
            agent_id, token = await wire.register(http, p["token"], name=f"gen-{i}", location="paris")
            await wire.beat(http, agent_id, token)
            agents.append((agent_id, token))
        body = {"name": "bench", "plan": wire.PLAN, "provider": "local", "containers": CONTAINERS}
        test = (await http.post("/tests", json=body)).json()
        t0 = time.time() - 3600
        per = SAMPLES // (labels * CONTAINERS)
        for agent_id, token in agents:
            r = await http.get(f"/agents/{agent_id}/commands", params={"timeout": 0}, headers=wire.bearer(token))
            (cmd,) = r.json()
            stats, errs = [], []
            for k in range(labels):
                s, e = _label(rng, f"T{k:03d} /api/resource/{k}", per, 40.0 + 360.0 * k / labels, t0)
                stats.append(s)
                errs.extend(e)
            report = wire.report(cmd, "finished", exit_code=0, labels=stats, errors=errs)
            await wire.beat(http, agent_id, token, containers=[report])
        ctl = app.state.controller
        for i in range(POINTS):
            ctl.series.add(test["id"], t0 + i, 277.0 + 30 * rng.random(), 120 + 40 * rng.random(), i // 20, 500)
        await ctl.flush(all_labels=True)
        assert (await http.get(f"/tests/{test['id']}")).json()["state"] == "finished"
        timed = []
        size = 0
        for what in ("report.html", "stats.csv", "junit.xml"):
            started = time.perf_counter()
            r = await http.get(f"/tests/{test['id']}/export/{what}")
            timed.append(time.perf_counter() - started)
            assert r.status_code == 200, r.text
            size = size or len(r.content)
        labels_seen = len((await http.get(f"/tests/{test['id']}/labels")).json())
        assert labels_seen == labels, labels_seen
        return timed[0], timed[1], timed[2], size


def measure(labels: int) -> tuple[float, float, float, int]:
    with tempfile.TemporaryDirectory(prefix="octotui-bench-export-") as tmp:
        return asyncio.run(_world(labels, Path(tmp)))


def run(runs: int = 3, quick: bool = False) -> Result:
    metrics, details = [], []
    for labels in (50, 200):
        got = [measure(labels) for _ in range(runs)]
        target = 2.0 if labels == 50 else None
        metrics.append(Metric(f"report.html, {labels} labels", "s", [g[0] for g in got], target))
        metrics.append(Metric(f"stats.csv, {labels} labels", "s", [g[1] for g in got]))
        metrics.append(Metric(f"junit.xml, {labels} labels", "s", [g[2] for g in got]))
        details.append(f"{labels} labels: report of {statistics.median(g[3] for g in got) / 1024:.0f} KiB")
    return Result("export_report", TITLE, TARGET, METHOD, metrics, details)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--labels", default="50,200")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for labels in (int(x) for x in args.labels.split(",")):
        got = [measure(labels) for _ in range(args.runs)]
        med = [statistics.median(g[i] for g in got) for i in range(4)]
        print(
            f"{labels} labels, {SAMPLES:,} samples, {CONTAINERS} containers, {POINTS} points: report.html "
            f"{med[0] * 1000:.0f} ms ({med[3] / 1024:.0f} KiB), stats.csv {med[1] * 1000:.0f} ms, "
            f"junit.xml {med[2] * 1000:.0f} ms (median of {args.runs}; runs: "
            f"{', '.join(f'{g[0] * 1000:.0f}' for g in got)} ms)"
        )


if __name__ == "__main__":
    main()
