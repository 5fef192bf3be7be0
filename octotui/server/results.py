"""A test's results from its containers' figures: live while it runs, final once it ended."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from octotui.protocol import TERMINAL_CONTAINER_STATES, TestResults, histogram_percentile
from octotui.server.records import ContainerRec


def live_results(containers: Iterable[ContainerRec]) -> TestResults:
    """Samples and errors summed, hits/s summed over live containers, average weighted by samples."""
    samples = errors = active = 0
    rate = weighted = 0.0
    low: float | None = None
    high = 0.0
    for c in containers:
        f = c.figures
        if f is None:
            continue
        samples += f.samples
        errors += f.errors
        weighted += f.avg_ms * f.samples
        if c.state not in TERMINAL_CONTAINER_STATES:
            rate += f.rate
            active += f.active
        if f.samples:
            low = f.min_ms if low is None else min(low, f.min_ms)
            high = max(high, f.max_ms)
    return TestResults(
        samples=samples,
        errors=errors,
        error_percent=round(errors * 100.0 / samples, 3) if samples else 0.0,
        throughput=round(rate, 3),
        avg_ms=round(weighted / samples, 3) if samples else 0.0,
        min_ms=low or 0.0,
        max_ms=high,
        active=active,
    )


def final_results(containers: Iterable[ContainerRec], duration_s: float | None) -> TestResults:
    """The test's final aggregate from each container's JTL figures (its live figures when none).

    Percentiles come from the containers' response-time histograms merged, which is the percentile
    of all samples (exact below 1 s, within 0.5 % above). When a container sent no histogram (an
    older agent, or no JTL), percentiles cannot be merged; then we take the **maximum** of the
    containers' percentiles, an upper bound of the true one: the safe side for a verdict.
    """
    samples = errors = 0
    throughput = weighted = 0.0
    low: float | None = None
    high = 0.0
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    merged: Counter[int] | None = Counter()
    for c in containers:
        if c.final is not None:
            r = c.final
            n, e, avg, lo, hi = r.samples, r.errors, r.avg_ms, r.min_ms, r.max_ms
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
            n, e, avg, lo, hi = f.samples, f.errors, f.avg_ms, f.min_ms, f.max_ms
            if f.samples:
                merged = None
            if duration_s:
                throughput += n / duration_s
        else:
            continue
        samples += n
        errors += e
        weighted += avg * n
        if n:
            low = lo if low is None else min(low, lo)
            high = max(high, hi)
    if merged:
        p90, p95, p99 = (histogram_percentile(merged, q) for q in (90, 95, 99))
    return TestResults(
        samples=samples,
        errors=errors,
        error_percent=round(errors * 100.0 / samples, 3) if samples else 0.0,
        throughput=round(throughput, 3),
        avg_ms=round(weighted / samples, 3) if samples else 0.0,
        min_ms=low or 0.0,
        max_ms=high,
        p90_ms=p90,
        p95_ms=p95,
        p99_ms=p99,
        active=0,
        final=True,
    )
