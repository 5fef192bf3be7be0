"""Pass/fail criteria of a test: parsed at its creation, decided on its final figures at the end, or
held while it runs (``for Ns``: broken that long, the test is stopped as failed).

Grammar: ``METRIC[ of LABEL] OP VALUE[UNIT][ for Ns]``

- METRIC: ``p50 p90 p95 p99 avg min max`` (response times; UNIT ``ms`` or ``s``, required),
  ``errors`` (the error rate; UNIT ``%``, assumed when absent), ``hits/s`` or ``throughput``
  (samples per second; UNIT ``/s`` or none).
- LABEL: a label of the plan (up to the operator; in double quotes when it holds ``<`` or ``>``);
  without it, the whole test.
- OP: ``<``, ``<=``, ``>``, ``>=``: what the figure must be to pass.

Final figures: the test's merged results (percentiles over all samples) and its labels merged
over its containers. Held figures: those of the last :data:`LIVE_WINDOW` seconds, the difference
of the cumulative per-label figures taken a second apart.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from octotui.protocol import CriterionResult, LabelFigures, histogram_percentile, rt_bucket_ms
from octotui.server.domain.state import ServerState
from octotui.server.errors import Invalid
from octotui.server.labelbook import merge_labels, unpack
from octotui.server.records import Cumulative, TestRec

#: Response-time metrics and the percentile each one is (None: not a percentile).
TIME_METRICS: dict[str, float | None] = {
    "p50": 50,
    "p90": 90,
    "p95": 95,
    "p99": 99,
    "avg": None,
    "min": None,
    "max": None,
}
ALIASES = {"throughput": "hits/s"}
METRICS = (*TIME_METRICS, "errors", "hits/s")
OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
#: Seconds of figures a held criterion is judged on, each second while the test runs.
LIVE_WINDOW = 10.0
#: The longest a criterion may be held (a week, as a test's duration).
MAX_FOR = 7 * 24 * 3600.0
#: The key of the whole test among the labels of a window.
WHOLE = "\x00whole test"

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_WORD = re.compile(r"[A-Za-z0-9/_%]+")


class CriterionError(Exception):
    """An expression that does not parse: ``position`` is 1-based, ``expected`` says what was wanted."""

    def __init__(self, position: int, expected: str) -> None:
        super().__init__(f"position {position}: {expected}")
        self.position = position
        self.expected = expected


class _Cursor:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0

    def spaces(self) -> None:
        while self.i < len(self.text) and self.text[self.i].isspace():
            self.i += 1

    def fail(self, expected: str) -> CriterionError:
        found = self.text[self.i : self.i + 12]
        where = f", found {found!r}" if found else ", found the end"
        return CriterionError(self.i + 1, expected + where)

    def match(self, pattern: re.Pattern[str]) -> str | None:
        m = pattern.match(self.text, self.i)
        if m is None:
            return None
        self.i = m.end()
        return m.group(0)

    def word(self, word: str) -> bool:
        """The word ``word`` (case-insensitive) followed by a space or the end; consumed if so."""
        end = self.i + len(word)
        if self.text[self.i : end].lower() == word and (end == len(self.text) or self.text[end].isspace()):
            self.i = end
            return True
        return False


def parse(expr: str) -> CriterionResult:
    """One expression as a criterion not decided yet; :class:`CriterionError` when it does not parse."""
    cur = _Cursor(expr)
    cur.spaces()
    start = cur.i
    name = (cur.match(_WORD) or "").lower()
    metric = ALIASES.get(name, name)
    if metric not in METRICS:
        cur.i = start
        raise cur.fail(f"expected a metric ({', '.join(METRICS)}, throughput)")
    cur.spaces()
    label = None
    if cur.word("of"):
        cur.spaces()
        label = _label(cur)
        cur.spaces()
    op = next((o for o in OPS if expr.startswith(o, cur.i)), None)
    if op is None:
        raise cur.fail("expected an operator <, <=, > or >=" + (" or 'of LABEL'" if label is None else ""))
    cur.i += len(op)
    cur.spaces()
    number = cur.match(_NUMBER)
    if number is None:
        raise cur.fail("expected a number")
    value = float(number)
    value = _unit(cur, metric, value)
    cur.spaces()
    for_s = None
    if cur.i < len(expr):
        if not cur.word("for"):
            raise cur.fail("expected 'for Ns' or the end")
        cur.spaces()
        seconds = cur.match(_NUMBER)
        if seconds is None:
            raise cur.fail("expected a number of seconds after 'for'")
        cur.spaces()
        if cur.match(re.compile(r"s\b|sec\b|seconds?\b", re.IGNORECASE)) is None:
            raise cur.fail("expected the unit s after the seconds of 'for'")
        for_s = float(seconds)
        if not 0 < for_s <= MAX_FOR:
            raise CriterionError(cur.i, f"'for' must be more than 0 s and at most {MAX_FOR:.0f} s, got {seconds} s")
        cur.spaces()
        if cur.i < len(expr):
            raise cur.fail("expected the end")
    return CriterionResult(expr=expr, metric=metric, label=label, op=op, threshold=value, for_s=for_s)


def _label(cur: _Cursor) -> str:
    text = cur.text
    if cur.i < len(text) and text[cur.i] == '"':
        end = text.find('"', cur.i + 1)
        if end < 0:
            raise cur.fail('expected the closing " of the label')
        label = text[cur.i + 1 : end]
        cur.i = end + 1
    else:
        stop = min((p for p in (text.find("<", cur.i), text.find(">", cur.i)) if p >= 0), default=len(text))
        label = text[cur.i : stop].rstrip()
        cur.i += len(label)
    if not label.strip():
        raise cur.fail("expected a label after 'of'")
    return label


def _unit(cur: _Cursor, metric: str, value: float) -> float:
    """The unit after the number, the value in the metric's own unit (ms, %, hits/s)."""
    cur.spaces()
    mark = cur.i
    if cur.word("for"):  # no unit, then the hold: ``hits/s>1 for 5s``, ``errors<1 for 5s``
        cur.i = mark
        unit = ""
    else:
        unit = (cur.match(re.compile(r"ms\b|s\b|%|/s\b|[A-Za-z/]+", re.IGNORECASE)) or "").lower()
    if metric in TIME_METRICS:
        if unit not in ("ms", "s"):
            cur.i = mark
            raise cur.fail("expected a unit ms or s")
        return value * 1000.0 if unit == "s" else value
    if metric == "errors":
        if unit not in ("", "%"):
            cur.i = mark
            raise cur.fail("expected the unit % (or none: a percentage)")
        if value > 100:
            raise CriterionError(mark + 1, f"an error rate is at most 100 %, got {value:g}")
        return value
    if unit not in ("", "/s"):
        cur.i = mark
        raise cur.fail("expected no unit (or /s) after hits/s")
    return value


def parse_all(exprs: Iterable[str]) -> list[CriterionResult]:
    """Every criterion of a launch, or :class:`Invalid` naming the first that does not parse (1-based)."""
    out = []
    for n, expr in enumerate(exprs, 1):
        try:
            out.append(parse(expr))
        except CriterionError as exc:
            raise Invalid(f"criterion {n}, position {exc.position}: {exc.expected} (in {expr!r})") from None
    return out


# --- figures ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Figures:
    """What a criterion is judged on, for the whole test or one label: response times in ms
    (None without samples), the error rate in %, samples per second."""

    samples: int
    values: Mapping[str, float | None]


def figures_of(c: Cumulative, seconds: float) -> Figures:
    """Figures from cumulative counts (or their difference over ``seconds``)."""
    n, errors, total, hist = c
    live = {b: k for b, k in hist.items() if k > 0}
    values: dict[str, float | None] = dict.fromkeys(METRICS)
    values["hits/s"] = n / seconds if seconds > 0 else 0.0
    if n > 0:
        values["errors"] = errors * 100.0 / n
        values["avg"] = total / n
        for metric, q in TIME_METRICS.items():
            if q is not None:
                values[metric] = histogram_percentile(live, q)
        if live:
            values["min"], values["max"] = rt_bucket_ms(min(live)), rt_bucket_ms(max(live))
    return Figures(n, values)


def cumulative(books: Iterable[Mapping[str, bytes]]) -> dict[str, Cumulative]:
    """Each label merged over the containers' label books, and :data:`WHOLE` over every label."""
    counts: dict[str, list[float]] = {}
    hists: dict[str, dict[int, int]] = {}
    for book in books:
        for label, blob in book.items():
            (n, err, total, *_), buckets, bucket_counts = unpack(blob)
            for key in (label, WHOLE):
                a = counts.setdefault(key, [0, 0, 0.0])
                a[0] += n
                a[1] += err
                a[2] += total
                hist = hists.setdefault(key, {})
                for b, k in zip(buckets, bucket_counts, strict=True):
                    hist[b] = hist.get(b, 0) + k
    return {k: (int(a[0]), int(a[1]), a[2], hists[k]) for k, a in counts.items()}


def difference(new: Cumulative, old: Cumulative | None) -> Cumulative:
    if old is None:
        return new
    hist = {b: k - old[3].get(b, 0) for b, k in new[3].items()}
    return new[0] - old[0], new[1] - old[1], new[2] - old[2], hist


def _books(s: ServerState, t: TestRec) -> list[Mapping[str, bytes]]:
    return [book.figures for cid in t.container_ids if (book := s.labels.get(cid)) is not None]


# --- judging ---------------------------------------------------------------------------------

_UNITS = {"errors": " %", "hits/s": ""}


def _fmt(metric: str, value: float) -> str:
    return f"{value:.3g}{_UNITS.get(metric, ' ms')}" if abs(value) < 100 else f"{value:.0f}{_UNITS.get(metric, ' ms')}"


def _name(c: CriterionResult) -> str:
    return c.metric if c.label is None else f"{c.metric} of {c.label}"


def judge(c: CriterionResult, actual: float) -> tuple[bool, str]:
    """Whether ``actual`` passes ``c``, and how it stands: ``p95 612 ms, over 500 ms by 112 ms (22 %)``."""
    passed = OPS[c.op](actual, c.threshold)
    diff = actual - c.threshold
    side = "over" if diff > 0 else "under" if diff < 0 else "at"
    text = f"{_name(c)} {_fmt(c.metric, actual)}, {side} {_fmt(c.metric, c.threshold)}"
    if diff:
        unit = " points" if c.metric == "errors" else _UNITS.get(c.metric, " ms")
        by = f"{abs(diff):.3g}" if abs(diff) < 100 else f"{abs(diff):.0f}"
        text += f" by {by}{unit}"
        if c.threshold:
            text += f" ({abs(diff) * 100.0 / c.threshold:.0f} %)"
    return passed, text


def _label_figures(f: LabelFigures) -> Figures:
    values: dict[str, float | None] = {
        "p50": f.p50_ms,
        "p90": f.p90_ms,
        "p95": f.p95_ms,
        "p99": f.p99_ms,
        "avg": f.avg_ms,
        "min": f.min_ms,
        "max": f.max_ms,
        "errors": f.error_percent,
        "hits/s": f.throughput,
    }
    if not f.samples:
        values = {"hits/s": 0.0}
    return Figures(f.samples, values)


def _final_figures(s: ServerState, t: TestRec) -> tuple[Figures, dict[str, Figures]]:
    """The whole test's final figures (its merged results, p50 from its labels), and its labels'
    merged over its containers (throughput over each label's own span)."""
    books = _books(s, t)
    by_label = {f.label: _label_figures(f) for f in merge_labels(books)}
    merged = merge_labels({WHOLE: blob} for book in books for blob in book.values())
    whole = _label_figures(merged[0]) if merged else None
    r = t.results
    if r is None or r.samples <= 0:
        return whole or Figures(0, {"hits/s": 0.0}), by_label
    values: dict[str, float | None] = {
        "avg": r.avg_ms,
        "min": r.min_ms,
        "max": r.max_ms,
        "p90": r.p90_ms,
        "p95": r.p95_ms,
        "p99": r.p99_ms,
        "errors": r.error_percent,
        "hits/s": r.throughput,
        "p50": None,
    }
    for key, value in values.items():
        if value is None and whole is not None:
            values[key] = whole.values.get(key)
    return Figures(r.samples, values), by_label


def _unknown_label(t: TestRec, c: CriterionResult, known: Iterable[str]) -> None:
    names = sorted(known)
    shown = ", ".join(repr(x) for x in names[:10]) + (" …" if len(names) > 10 else "")
    c.passed, c.actual = False, None
    c.detail = f"no label {c.label!r} in the results" + (f" (labels: {shown})" if names else " (no labels at all)")
    warning = f"criterion {c.expr!r}: {c.detail}"
    if warning not in t.warnings:
        t.warnings.append(warning)


def decide(s: ServerState, t: TestRec) -> None:
    """At the end of ``t``: every criterion not decided yet decided on its final figures; its verdict."""
    if not t.criteria:
        return
    whole, by_label = _final_figures(s, t)
    for i, c in enumerate(t.criteria):
        if c.passed is False:
            continue  # a held criterion broken long enough: decided already
        figures = whole if c.label is None else by_label.get(c.label)
        if figures is None:
            _unknown_label(t, c, by_label)
            continue
        if c.for_s is not None:
            most = t.broken_most.get(i, 0.0)
            c.passed = True
            c.detail = f"never broken for {c.for_s:g} s" + (f" (at most {most:.0f} s)" if most else "")
            if c.actual is not None:
                c.detail += f"; last: {judge(c, c.actual)[1]}"
            continue
        actual = figures.values.get(c.metric)
        if actual is None:
            c.passed, c.actual = False, None
            c.detail = f"{_name(c)}: no samples to judge on"
            continue
        c.actual = round(actual, 3)
        c.passed, c.detail = judge(c, actual)
    t.verdict = "failed" if any(c.passed is False for c in t.criteria) else "passed"
    t.window.clear()  # live only: an ended test keeps its criteria, not its figures of the last seconds
    t.broken_since.clear()


def broken_by(t: TestRec) -> CriterionResult | None:
    """The held criterion that stopped ``t``, if one did."""
    return next((c for c in t.criteria if c.for_s is not None and c.passed is False and c.actual is not None), None)


def watch(s: ServerState, t: TestRec, now: float) -> CriterionResult | None:
    """Each second while ``t`` runs: its criteria on the live figures (held ones on the last
    :data:`LIVE_WINDOW` seconds, the others on its figures so far); the held criterion broken
    long enough, when there is one (the caller stops the test)."""
    cums = cumulative(_books(s, t))
    window = t.window
    window.append((now, cums))
    while len(window) > 2 and window[1][0] <= now - LIVE_WINDOW:
        window.popleft()
    then, old = window[0]
    seconds = now - then
    broken: CriterionResult | None = None
    changed = False
    for i, c in enumerate(t.criteria):
        key = WHOLE if c.label is None else c.label
        if c.passed is not None or key not in cums:
            continue
        if c.for_s is None:
            actual = figures_of(cums[key], 0.0).values.get(c.metric) if c.metric != "hits/s" else None
            if actual is not None and c.actual != round(actual, 3):
                c.actual = round(actual, 3)
                c.detail = f"so far: {judge(c, actual)[1]}"
                changed = True
            continue
        if seconds < 1.0:
            continue
        figures = figures_of(difference(cums[key], old.get(key)), seconds)
        actual = figures.values.get(c.metric)
        if actual is None or not math.isfinite(actual):
            continue
        ok, text = judge(c, actual)
        if ok:
            t.broken_since.pop(i, None)
            held = 0.0
        else:
            since = t.broken_since.setdefault(i, now)
            held = now - since
            t.broken_most[i] = max(t.broken_most.get(i, 0.0), held)
        detail = f"{text} over the last {seconds:.0f} s" + (f"; broken for {held:.0f} s" if held else "")
        if c.actual != round(actual, 3) or c.detail != detail:
            c.actual, c.detail = round(actual, 3), detail
            changed = True
        if not ok and held >= c.for_s and broken is None:
            c.passed = False
            c.detail = f"{text} over the last {seconds:.0f} s; broken for {held:.0f} s (held for {c.for_s:g} s)"
            broken = c
            changed = True
    if broken is not None:
        t.verdict = "failed"
    if changed:
        s.unsaved.tests.add(t.id)
        s.feed.touch("test", t.id)
    return broken
