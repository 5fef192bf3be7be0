"""Figure: the HTML report of a 24-hour, 1,000,000-sample test with every timeline kept (issue 12,
part 3 and 5): the test's series, each label's and each generator's, as the store holds them.

Run alone: ``python -m bench.report_series [--labels 50,200] [--runs 3]`` (keeps its result in
bench/results and rewrites docs/BENCHMARKS.md, as ``python -m bench`` does).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import time
from array import array
from pathlib import Path

import httpx

from bench.common import Metric, Result, repeat, standalone
from bench.export_report import _label
from octotui.server.app import create_app
from octotui.server.settings import ServerSettings
from octotui.server.timeline import GeneratorTimeline, LabelTimeline, Timeline
from tests.support import wire

TITLE = "HTML report of a 24-hour test with every timeline kept (50 and 200 labels)"
TARGET = "< 2 s (50 labels)"
SAMPLES = 1_000_000
CONTAINERS = 10
DAY = 24 * 3600.0
METHOD = f"""the real app in process (httpx.ASGITransport, lifespan included); {CONTAINERS} wire-level
agents each report one container of one test: N labels sharing {SAMPLES:,} samples (as
`export_report`); the test ends and its timelines are stored as a 24-hour test leaves them at their
bounds: the test's 5,000 points (3,600 one-second ones, the rest one-minute buckets), each label's
1,000 (600 one-second, 400 four-minute buckets) and each of the {CONTAINERS} generators' 1,000.
Timed: GET /tests/{{id}}/export/report.html from the request to the last byte (labels and every
timeline read from the store, merged, the page rendered with every label's series in its data)."""

ADMIN = "bench-admin"


def _packed(fields: int, fine: int, coarse: int, width: float, t0: float, rng: random.Random) -> bytes:
    """Points of a timeline at its bound: ``coarse`` buckets of ``width`` s, then ``fine`` 1 s points."""
    values = array("d")
    start_fine = t0 + DAY - fine
    for i in range(coarse):
        values.extend([start_fine - (coarse - i) * width, *(rng.uniform(1, 500) for _ in range(fields - 2)), width])
    for i in range(fine):
        values.extend([start_fine + i, *(rng.uniform(1, 500) for _ in range(fields - 2)), 1.0])
    return array("d", (-1.0, float(fields))).tobytes() + values.tobytes()


async def _world(labels: int, data_dir: Path) -> tuple[float, int]:
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
        t0 = time.time() - DAY
        per = SAMPLES // (labels * CONTAINERS)
        names = [f"T{k:03d} /api/resource/{k}" for k in range(labels)]
        for agent_id, token in agents:
            r = await http.get(f"/agents/{agent_id}/commands", params={"timeout": 0}, headers=wire.bearer(token))
            (cmd,) = r.json()
            stats, errs = [], []
            for k, name in enumerate(names):
                s, e = _label(rng, name, per, 40.0 + 360.0 * k / labels, t0)
                stats.append(s)
                errs.extend(e)
            report = wire.report(cmd, "finished", exit_code=0, labels=stats, errors=errs)
            await wire.beat(http, agent_id, token, containers=[report])
        ctl = app.state.controller
        tid = test["id"]
        ctl.series.put(tid, 60.0, 1400, _packed(Timeline.FIELDS, 3600, 1400, 60.0, t0, rng))
        ctl.series.dirty.add(tid)
        tl = ctl.timelines
        tl.labels[tid] = {
            name: LabelTimeline.unpack(240.0, 400, _packed(LabelTimeline.FIELDS, 600, 400, 240.0, t0, rng))
            for name in names
        }
        tl.generators[tid] = {
            agent_id: GeneratorTimeline.unpack(240.0, 400, _packed(GeneratorTimeline.FIELDS, 600, 400, 240.0, t0, rng))
            for agent_id, _ in agents
        }
        tl.names[tid] = {agent_id: f"gen-{i}" for i, (agent_id, _) in enumerate(agents)}
        tl.dirty.add(tid)
        await ctl.flush(all_labels=True)
        assert tid not in tl and (await http.get(f"/tests/{tid}")).json()["state"] == "finished"
        started = time.perf_counter()
        r = await http.get(f"/tests/{tid}/export/report.html")
        took = time.perf_counter() - started
        assert r.status_code == 200, r.text
        assert r.text.count("<option value=") == labels
        return took, len(r.content)


def measure(labels: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory(prefix="octotui-bench-report-series-") as tmp:
        return asyncio.run(_world(labels, Path(tmp)))


def run(runs: int = 3, quick: bool = False) -> Result:
    metrics, details = [], []
    for labels in (50, 200):

        def once(i: int, n: int = labels) -> dict[str, float]:
            took, size = measure(n)
            return {"seconds": took, "bytes": float(size)}

        got = repeat(runs, once)
        target = 2.0 if labels == 50 else None
        metrics.append(Metric(f"report.html, 24 h kept, {labels} labels", "s", got["seconds"], target))
        details.append(f"{labels} labels: report of {statistics.median(got['bytes']) / 1024:.0f} KiB")
    return Result("report_series", TITLE, TARGET, METHOD, metrics, details)


if __name__ == "__main__":
    standalone(run, doc=__doc__)
