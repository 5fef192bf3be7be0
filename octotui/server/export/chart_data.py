"""The data of the HTML report's charts (:mod:`.report`): the test's series, each label's and each
generator's kept timeline, and the monitors' metrics with their alarms, as the compact JSON the
page's script draws from (times in seconds from the test's first point)."""

from __future__ import annotations

import json
import math

from octotui.protocol import TestSeriesPoint
from octotui.server.export.data import ExportData


def _f(x: float) -> float:
    return round(x, 3) if math.isfinite(x) else 0.0


def _o(x: float | None) -> float | None:
    return None if x is None else _f(x)


def _errors_per_second(pts: list[TestSeriesPoint]) -> list[float]:
    """Each point's errors/s: its own, or (a series kept before those were) the difference of the
    cumulative errors over the interval."""
    if any(p.error_rate or p.p95_ms is not None or p.received_bps for p in pts):
        return [p.error_rate for p in pts]
    out = []
    for i, p in enumerate(pts):
        dt = p.ts - pts[i - 1].ts if i else 0.0
        out.append(max(0, p.errors - pts[i - 1].errors) / dt if i and dt > 0 else 0.0)
    return out


def series_json(data: ExportData) -> str:
    """The series as compact JSON safe inside ``<script>``, times in seconds from the test's first
    point: ``series`` [t, hits/s, avg ms, errors, active, errors/s, 95th ms, received B/s, sent
    B/s]; ``labels`` [{name, points: [t, hits/s, errors/s, avg ms, 95th ms, received B/s, sent B/s, seconds]}];
    ``generators`` [{name, points: [t, CPU %, memory %]}]."""
    pts = data.series
    lines = [(x.name, x.points()) for x in data.label_series]
    generators = [(g.name, g.points()) for g in data.generator_series]
    firsts = [pts[0].ts] if pts else []
    firsts += [points[0][0] for _, points in (*lines, *generators) if points]
    t = data.test
    start = (t.started_at or t.created_at).timestamp()
    end = t.ended_at.timestamp() if t.ended_at else data.generated_at
    t0 = min(firsts) if firsts else start
    # The test's time axis, for the monitors' charts: its series' span, else its own.
    axis = [_f(pts[0].ts - t0), _f(pts[-1].ts - t0)] if len(pts) > 1 else [_f(start - t0), _f(end - t0)]
    rows = [
        [_f(p.ts - t0), _f(p.rate), _f(p.avg_ms), p.errors, p.active, _f(er), _o(p.p95_ms), _f(p.received_bps),
         _f(p.sent_bps)]
        for p, er in zip(pts, _errors_per_second(pts), strict=True)
    ]  # fmt: skip
    # Kept timelines hold finite numbers (NaN, a missing 95th, comes out as None): rounded as they are.
    labels = [
        {
            "name": name,
            "points": [
                [
                    round(ts - t0, 3),
                    round(r, 3),
                    round(er, 3),
                    round(avg, 3),
                    p95 if p95 is None else round(p95, 3),
                    round(rx, 3),
                    round(tx, 3),
                    round(n, 3),
                ]
                for ts, r, er, avg, p95, rx, tx, n in points
            ],
        }
        for name, points in lines
    ]
    gens = [
        {"name": name, "points": [[_f(p[0] - t0), _f(p[1]), _f(p[2])] for p in points]} for name, points in generators
    ]
    monitors = [
        {
            "name": x.monitor_name or x.monitor,
            "metric": x.metric,
            "points": [[_f(ts - t0), _f(v)] for ts, v in x.points],
            "alarms": [
                [_f(a.started_at.timestamp() - t0), _o(a.ended_at.timestamp() - t0 if a.ended_at else None), a.severity]
                for a in data.alarms
                if a.monitor == x.monitor and a.metric.split("{", 1)[0] == x.metric.split("{", 1)[0]
            ],
        }
        for x in data.monitor_series
    ]
    text = json.dumps(
        {"series": rows, "labels": labels, "generators": gens, "monitors": monitors, "axis": axis},
        separators=(",", ":"),
        allow_nan=False,
    )
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
