"""A test against a baseline (issue 12, part 6): each label's average, 95th percentile, error % and
throughput beside the same label of an earlier run, from each test's merged ``/labels`` figures.

A label regressed when, against its baseline, its average or 95th percentile grew by more than
their tolerance (in %), its error % grew by more than its tolerance (in points), or its
throughput fell by more than its tolerance (in %). A label in only one of the two runs is listed
with the other side empty and is not a regression.
"""

from __future__ import annotations

from octotui.protocol import Comparison, LabelDelta, LabelFigures
from octotui.server.domain import labels
from octotui.server.domain.state import ServerState
from octotui.server.errors import Invalid

#: Tolerances when none is given: % for times and throughput, points for the error %.
TOLERANCES: dict[str, float] = {"avg_ms": 10.0, "p95_ms": 10.0, "error_percent": 1.0, "throughput": 10.0}


def _n(x: float) -> str:
    return f"{x:.0f}" if abs(x) >= 100 or float(x).is_integer() else f"{x:.1f}"


def _grew(now: float, before: float) -> float | None:
    """How much ``now`` is above ``before``, in % of it (None when ``before`` is 0)."""
    return (now - before) * 100.0 / before if before > 0 else None


def reasons(now: LabelFigures, base: LabelFigures, tol: dict[str, float]) -> list[str]:
    """How ``now`` is worse than ``base`` beyond ``tol``, one short sentence each."""
    out = []
    for key, name in (("avg_ms", "avg"), ("p95_ms", "p95")):
        a, b = getattr(now, key), getattr(base, key)
        grew = _grew(a, b)
        if grew is not None and grew > tol[key]:
            out.append(f"{name} +{grew:.0f} % ({_n(b)} → {_n(a)} ms)")
    points = now.error_percent - base.error_percent
    if points > tol["error_percent"]:
        out.append(f"errors +{points:.1f} points ({base.error_percent:.1f} → {now.error_percent:.1f} %)")
    drop = (base.throughput - now.throughput) * 100.0 / base.throughput if base.throughput > 0 else 0.0
    if drop > tol["throughput"]:
        out.append(f"throughput -{drop:.0f} % ({_n(base.throughput)} → {_n(now.throughput)} /s)")
    return out


def tolerances(given: dict[str, float | None]) -> dict[str, float]:
    """The defaults with the given ones laid over them."""
    out = dict(TOLERANCES)
    out.update({k: float(v) for k, v in given.items() if v is not None and k in out})
    return out


async def compare(s: ServerState, test_id: str, baseline_id: str, given: dict[str, float | None]) -> Comparison:
    """Per-label deltas of ``test_id`` against ``baseline_id`` (union of both runs' labels, sorted).

    Unknown test or baseline: :class:`~octotui.server.errors.NotFound`; a test as its own baseline:
    :class:`Invalid`.
    """
    t = s.get_test(test_id)
    b = s.get_test(baseline_id)
    if t.id == b.id:
        raise Invalid(f"test {t.id} cannot be its own baseline: pick an earlier run")
    tol = tolerances(given)
    now = {f.label: f for f in await labels.figures(s, t)}
    before = {f.label: f for f in await labels.figures(s, b)}
    out: list[LabelDelta] = []
    for label in sorted(now.keys() | before.keys()):
        x, y = now.get(label), before.get(label)
        why = reasons(x, y, tol) if x is not None and y is not None else []
        out.append(
            LabelDelta(
                label=label,
                samples=x.samples if x else None,
                baseline_samples=y.samples if y else None,
                avg_ms=x.avg_ms if x else None,
                baseline_avg_ms=y.avg_ms if y else None,
                p95_ms=x.p95_ms if x else None,
                baseline_p95_ms=y.p95_ms if y else None,
                error_percent=x.error_percent if x else None,
                baseline_error_percent=y.error_percent if y else None,
                throughput=x.throughput if x else None,
                baseline_throughput=y.throughput if y else None,
                regression=bool(why),
                reasons=why,
            )
        )
    return Comparison(
        test_id=t.id,
        baseline_id=b.id,
        labels=out,
        regressions=sum(1 for d in out if d.regression),
        tolerances=tol,
    )
