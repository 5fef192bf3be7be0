"""What the test screen writes in words: its summary, the line under its pane and the texts of
empty panes. Plain functions of the contract's models, tested without Textual."""

from __future__ import annotations

from typing import Literal

from octotui.protocol import (
    TERMINAL_TEST_STATES,
    Comparison,
    ContainerRecord,
    CriterionResult,
    ErrorFigures,
    LabelFigures,
    Test,
)
from octotui.tui import format as fmt
from octotui.tui.format import plural
from octotui.tui.rows import comparison_line, error_key, live_containers, test_state
from octotui.tui.widgets.charts import WAITING

#: What the labels and errors panes say when the server keeps no per-label figures (it answered 404).
NO_LABELS_ON_SERVER = "this server keeps no per-label figures (it is older than them)"


def number(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def test_summary(test: Test) -> str:
    """Three lines: identity and state, whole-test results, users now and response times
    (percentiles once final). Once the test has ended, "now" has no value: it reads "-"."""
    r = test.results
    live = live_containers(test)
    total = len(test.containers)
    first = f"{test.name} · {test_state(test)} · {test.provider_name or test.provider}"
    if test.locations:
        first += f"/{','.join(test.locations)}"
    first += f" · {live}/{plural(total, 'container')} live · {test.image}"
    # Whole-test figures, labelled so: the charts below show each interval's, which differ.
    some = r.samples > 0
    second = (
        f"whole test: {plural(r.samples, 'sample')} · {r.throughput:.1f}/s · avg {_ms(r.avg_ms if some else None)} ms"
        f" · errors {r.errors} ({r.error_percent:.2f}%)"
    )
    ended = test.state in TERMINAL_TEST_STATES
    third = f"users now {'-' if ended else r.active} · times: min {_ms(r.min_ms if some else None)}"
    third += f" · max {_ms(r.max_ms if some else None)}"
    if r.final:
        third += f" · p90 {_ms(r.p90_ms)} · p95 {_ms(r.p95_ms)} · p99 {_ms(r.p99_ms)}"
    third += " ms" + (" (final)" if r.final else " (so far)")
    return "\n".join((first, second, third))


#: How a criterion stands: passed, failed, or not decided yet.
Standing = Literal["passed", "failed", "pending"]


def criterion_standing(c: CriterionResult) -> Standing:
    return "pending" if c.passed is None else "passed" if c.passed else "failed"


def criterion_line(c: CriterionResult) -> str:
    """One criterion in words: ``✓ p95<500ms: p95 312 ms``, ``✗ errors<1%: errors 3.2 %, over…``,
    ``· hits/s>100: pending (now 80)``."""
    standing = criterion_standing(c)
    mark = {"passed": "✓", "failed": "✗", "pending": "·"}[standing]
    detail = c.detail.strip()
    if standing == "pending":
        # The server's detail says where it stands so far; without one, the latest figure.
        now = f" (now {c.actual:.4g})" if c.actual is not None and not detail else ""
        held = f", held for {c.for_s:g} s" if c.for_s else ""
        detail = f"pending{now}{held}" + (f" · {detail}" if detail else "")
    return f"{mark} {c.expr}" + (f": {detail}" if detail else "")


def verdict_line(test: Test) -> str:
    """The test's verdict on its criteria: ``verdict: failed · 1 of 3 criteria failed``; "" without
    criteria."""
    if not test.criteria:
        return ""
    failed = sum(1 for c in test.criteria if c.passed is False)
    pending = sum(1 for c in test.criteria if c.passed is None)
    n = len(test.criteria)
    if test.verdict is not None:
        head = f"verdict: {test.verdict}"
    elif test.state in TERMINAL_TEST_STATES:
        head = "verdict: none (the test ended before its criteria were decided)"
    else:
        head = "verdict: pending"
    counts = []
    if failed:
        counts.append(f"{failed} of {_criteria(n)} failed")
    if pending and test.verdict is None:
        counts.append(f"{pending} of {n} pending")
    if not failed and not pending:
        counts.append(f"{_criteria(n)} passed")
    return " · ".join([head, *counts])


def _criteria(n: int) -> str:
    return f"{n} {'criterion' if n == 1 else 'criteria'}"


def warning_lines(test: Test) -> list[str]:
    """The test's warnings (a saturated generator: results may be skewed), each marked."""
    return [f"⚠ {w.strip()}" for w in test.warnings if w.strip()]


def elapsed_times(test: Test, stamps: list[float]) -> tuple[float, ...]:
    """Seconds since ``test`` started (else since the first stamp) of each of ``stamps`` (unix time)."""
    if not stamps:
        return ()
    start = test.started_at.timestamp() if test.started_at else stamps[0]
    start = min(start, stamps[0])
    return tuple(t - start for t in stamps)


def container_line(container: ContainerRecord | None) -> str:
    """The selected container's full error (or pull progress), under the containers table."""
    if container is None:
        return ""
    where = f"#{container.index} {container.agent_name or container.agent[:8]}"
    if container.error:
        return f"{where} · {container.state}: {container.error.strip()}"
    if container.exit_code is not None:
        return f"{where} · {container.state}, exit code {container.exit_code}"
    return f"{where} · {container.state}"


def label_line(f: LabelFigures | None) -> str:
    """The selected label in full: what its row has no room for (min, median, bytes, counts)."""
    if f is None:
        return ""
    return (
        f"{f.label} · {f.errors}/{f.samples} failed · min {fmt.ms(f.min_ms)} p50 {fmt.ms(f.p50_ms)} ms"
        f" · in {f.received_kbps:.1f} out {f.sent_kbps:.1f} KiB/s"
    )


def error_line(e: ErrorFigures | None) -> str:
    """The selected error in full: its message is often longer than its column."""
    if e is None:
        return ""
    return f"{e.label} · {e.code} · {plural(e.count, 'time')}: {e.message.strip()}"


def pane_empty_text(what: str, items: list[LabelFigures] | list[ErrorFigures] | None, needle: str) -> str:
    """What the line under an empty labels or errors pane says (``what``: "labels" or "errors")."""
    if items is None:
        return NO_LABELS_ON_SERVER
    if not items:
        return "no errors" if what == "errors" else "no labels yet: JMeter has not reported a sample"
    return f"no {what} match the filter {needle.strip()!r} (/ changes it, esc clears it)" if needle.strip() else ""


def no_data_text(test: Test) -> str:
    """What the charts say while the series is empty."""
    if test.state == "failed":
        return "no data: the test failed before JMeter reported"
    if test.state in TERMINAL_TEST_STATES:
        return "no data: the test ended before JMeter reported"
    return WAITING


def labels_line(labels: list[LabelFigures] | None, key: str | None, shown: bool, answered: bool, needle: str) -> str:
    """The line under the labels pane: the selected label in full, or why the pane is empty."""
    if not shown:
        return pane_empty_text("labels", labels, needle) if answered else "loading…"
    return label_line(next((f for f in labels or () if f.label == key), None))


def errors_line(errors: list[ErrorFigures] | None, key: str | None, shown: bool, answered: bool, needle: str) -> str:
    """The line under the errors pane: the selected error in full, or why the pane is empty."""
    if not shown:
        return pane_empty_text("errors", errors, needle) if answered else "loading…"
    return error_line(next((e for e in errors or () if error_key(e) == key), None))


def baseline_line(comparison: Comparison | None, key: str | None, shown: bool) -> str:
    """The line under the baseline pane: the selected label's comparison, or what to do."""
    if comparison is None:
        return "b picks an earlier ended test to compare this one with"
    if not shown:
        return "no labels in either test"
    return comparison_line(next((d for d in comparison.labels if d.label == key), None))
