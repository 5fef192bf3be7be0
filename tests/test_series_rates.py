"""The test's errors/s and bytes/s over time (``octotui/server/domain/series.py``): a point a second,
an agent's report a heartbeat; each report's delta is spread over the time it covers and held until
the next one, never a run of zeros then the whole interval's in one second (trial finding F12), and
a stop still shows as 0: at the next report when the samples go on, two heartbeats (at least 10 s)
after the last report when everything stopped."""

from __future__ import annotations

import math
import time
from pathlib import Path

from octotui.server.domain import series as series_domain
from tests.support.labelkit import Launched, Sample, samples, serving
from tests.support.wire import figures


async def test_errors_and_bytes_per_second_spread_over_each_report_and_zero_once_stopped(tmp_path: Path) -> None:
    async with serving(tmp_path / "d") as env:
        t = await Launched.start(env)
        env.ctl.last_point = math.inf  # the points are taken by hand, at the times below
        rec = env.ctl.get_test(t.id)
        at = time.time() - 120
        rows: list[Sample] = []

        async def report(k: int, errors: bool = True) -> None:
            """The agent's k-th heartbeat: 5 s more of samples (10/s, every 5th failed while ``errors``)."""
            rows.extend(samples("home", 5.0 * k, [10] * 50, fail_every=5 if errors else 0))
            failed = sum(1 for r in rows if not r[3])
            await t.beat(0, "running", rows, figures=figures(len(rows), 10.0, 10.0, errors=failed))

        await t.beat(0, "running", figures=figures(0, 0.0, 0.0))
        for s in range(37):
            if s % 5 == 0 and 0 < s <= 25:
                await report(s // 5, errors=s < 25)  # the errors stop at 25 s, the samples after it
            series_domain.sample(env.ctl, rec, env.ctl.containers_of(rec), at + s)
        got = (await env.http.get(f"/tests/{t.id}/series")).json()["points"]
        assert [round(p["ts"] - at) for p in got] == list(range(37))
        # 10 errors and 50 x 1,010 bytes received each 5 s: 2 errors/s, 10,100 B/s from the first report on.
        assert [p["error_rate"] for p in got] == [0.0] * 5 + [2.0] * 20 + [0.0] * 12
        assert [p["received_bps"] for p in got] == [0.0] * 5 + [10100.0] * 30 + [0.0] * 2
        assert [p["sent_bps"] for p in got] == [0.0] * 5 + [2000.0] * 30 + [0.0] * 2
