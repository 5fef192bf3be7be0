"""A test's results from its containers' figures: live while it runs, final once it ended."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from octotui.protocol import TERMINAL_CONTAINER_STATES, TestResults, histogram_percentile
from octotui.server.records import ContainerRec


class _Totals:
    """Samples and errors summed, average weighted by samples, min and max over containers."""

    def __init__(self) -> None:
        self.samples = self.errors = 0
        self.weighted = self.high = 0.0
        self.low: float | None = None

    def add(self, samples: int, errors: int, avg_ms: float, min_ms: float, max_ms: float) -> None:
        self.samples += samples
        self.errors += errors
        self.weighted += avg_ms * samples
        if samples:
            self.low = min_ms if self.low is None else min(self.low, min_ms)
            self.high = max(self.high, max_ms)

    def results(self, throughput: float, **extra: Any) -> TestResults:
        n = self.samples
        return TestResults(
            samples=n,
            errors=self.errors,
            error_percent=round(self.errors * 100.0 / n, 3) if n else 0.0,
            throughput=round(throughput, 3),
            avg_ms=round(self.weighted / n, 3) if n else 0.0,
            min_ms=self.low or 0.0,
            max_ms=self.high,
            **extra,
        )


def live_results(containers: Iterable[ContainerRec]) -> TestResults:
    """Samples and errors summed, hits/s summed over live containers, average weighted by samples."""
    totals = _Totals()
    rate = 0.0
    active = 0
    for c in containers:
        f = c.figures
        if f is None:
            continue
        totals.add(f.samples, f.errors, f.avg_ms, f.min_ms, f.max_ms)
        if c.state not in TERMINAL_CONTAINER_STATES:
            rate += f.rate
            active += f.active
    return totals.results(rate, active=active)


def final_results(containers: Iterable[ContainerRec], duration_s: float | None) -> TestResults:
    """The test's final aggregate from each container's JTL figures (its live figures when none).

    Percentiles come from the containers' response-time histograms merged, which is the percentile
    of all samples (exact below 1 s, within 0.5 % above). When a container sent no histogram (an
    older agent, or no JTL), percentiles cannot be merged; then we take the **maximum** of the
    containers' percentiles, an upper bound of the true one: the safe side for a verdict.
    """
    totals = _Totals()
    throughput = 0.0
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    merged: Counter[int] | None = Counter()
    for c in containers:
        if c.final is not None:
            r = c.final
            totals.add(r.samples, r.errors, r.avg_ms, r.min_ms, r.max_ms)
            throughput += r.throughput
            if merged is not None and r.histogram is not None:
                merged.update(r.histogram)
            elif r.samples:
                merged = None
            p90 = max(p90 or 0.0, r.p90_ms)
            p95 = max(p95 or 0.0, r.p95_ms)
            p99 = max(p99 or 0.0, r.p99_ms)
        elif c.figures is not None:
            f = c.figures
            totals.add(f.samples, f.errors, f.avg_ms, f.min_ms, f.max_ms)
            if f.samples:
                merged = None
            if duration_s:
                throughput += f.samples / duration_s
    if merged:
        p90, p95, p99 = (histogram_percentile(merged, q) for q in (90, 95, 99))
    return totals.results(throughput, p90_ms=p90, p95_ms=p95, p99_ms=p99, active=0, final=True)
