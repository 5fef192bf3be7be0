"""Per-label figures of containers, kept compactly, and merged exactly over a test's containers.

An agent reports each label's figures cumulative since its container started, and only the labels
that changed since the last heartbeat the server answered: a report replaces what the server held
for that (container, label), and the same for each (container, label, code, message) error count.
A report repeated (its answer was lost) therefore changes nothing, and nothing is counted twice.

A server holds thousands of agents, and a Python object costs the collector time at every full
collection: one label of one container is **one** ``bytes`` object (figures and histogram packed
with :mod:`struct`, ~72 bytes + 16 per histogram bucket; untracked by the garbage collector), and
its error counts one ``str`` -> ``int`` entry each. The same bytes are what the store keeps.
"""

from __future__ import annotations

import itertools
import json
import math
import operator
import struct
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from octotui.protocol import ErrorCount, ErrorFigures, LabelFigures, LabelStats, histogram_percentile

#: samples, errors, sum_ms, min_ms, max_ms, bytes received, bytes sent, first_ts, last_ts (None: NaN)
_HEAD = struct.Struct("<qqdddqqdd")
_NONE = math.nan
#: Joins a response code and message into one key: report text never holds a control character.
_SEP = "\0"


def pack(stats: LabelStats) -> bytes:
    """One label's figures as stored: the header, then the histogram's buckets and their counts
    (buckets ascending, empty ones left out). ``ValueError`` for numbers that do not fit 64 bits."""
    hist = stats.histogram
    buckets = sorted(b for b, n in hist.items() if n > 0)
    try:
        head = _HEAD.pack(
            stats.samples,
            stats.errors,
            stats.sum_ms,
            _NONE if stats.min_ms is None else stats.min_ms,
            _NONE if stats.max_ms is None else stats.max_ms,
            stats.bytes_received,
            stats.bytes_sent,
            _NONE if stats.first_ts is None else stats.first_ts,
            _NONE if stats.last_ts is None else stats.last_ts,
        )
        body = struct.pack(f"<{2 * len(buckets)}q", *buckets, *[hist[b] for b in buckets])
    except struct.error as exc:
        raise ValueError(f"label {stats.label!r}: {exc}") from None
    return head + body


def unpack(blob: bytes) -> tuple[tuple[float, ...], tuple[int, ...], tuple[int, ...]]:
    """The header fields of :func:`pack`, the histogram's buckets and their counts."""
    head = _HEAD.unpack_from(blob)
    n = (len(blob) - _HEAD.size) // 16
    flat = struct.unpack_from(f"<{2 * n}q", blob, _HEAD.size)
    return head, flat[:n], flat[n:]


def to_lists(blob: bytes) -> list[Any]:
    """One label's packed figures as numbers for JSON (the replicas' live exchange): the header,
    the buckets as gaps from the previous one (mostly 1: they compress ~2x better than base64 of the
    packed bytes) and their counts."""
    head, buckets, counts = unpack(blob)
    return [list(head), list(map(operator.sub, buckets, (0, *buckets))), list(counts)]


def from_lists(parts: list[Any]) -> bytes:
    """:func:`to_lists` back to the packed bytes (``ValueError`` for numbers that do not fit)."""
    head, gaps, counts = parts
    if len(gaps) != len(counts):
        raise ValueError("buckets and counts differ in number")
    try:
        return _HEAD.pack(*head) + struct.pack(f"<{2 * len(gaps)}q", *itertools.accumulate(gaps), *counts)
    except struct.error as exc:
        raise ValueError(str(exc)) from None


def error_key(code: str, message: str) -> str:
    return f"{code}{_SEP}{message}"


class LabelBook:
    """One container's labels: packed figures per label, error counts per label and code+message,
    the labels changed since they were last stored and, with replicas, since they were last
    published to the others (``outgoing``, None without replicas)."""

    __slots__ = ("dirty", "errors", "figures", "outgoing")

    def __init__(self) -> None:
        self.figures: dict[str, bytes] = {}
        self.errors: dict[str, dict[str, int]] = {}
        self.dirty: set[str] = set()
        self.outgoing: set[str] | None = None

    def take(self, labels: Iterable[LabelStats] | None, errors: Iterable[ErrorCount] | None) -> tuple[bool, list[str]]:
        """Replace the reported labels' figures and error counts: whether anything changed, and why
        labels whose numbers cannot be packed were left as they were."""
        changed = False
        refused: list[str] = []
        for stats in labels or ():
            try:
                blob = pack(stats)
            except ValueError as exc:
                refused.append(str(exc))
                continue
            if self.figures.get(stats.label) != blob:
                self.figures[stats.label] = blob
                self.dirty.add(stats.label)
                if self.outgoing is not None:
                    self.outgoing.add(stats.label)
                changed = True
        for e in errors or ():
            counts = self.errors.setdefault(e.label, {})
            key = error_key(e.code, e.message)
            if counts.get(key) != e.count:
                counts[key] = e.count
                self.dirty.add(e.label)
                if self.outgoing is not None:
                    self.outgoing.add(e.label)
                changed = True
        return changed, refused

    def row(self, label: str) -> tuple[bytes | None, str | None]:
        """One label as stored: its packed figures and its error counts (JSON ``[[code, message,
        count], ...]``), each None when there are none."""
        counts = self.errors.get(label)
        errs = None
        if counts:
            errs = json.dumps([[*k.split(_SEP, 1), n] for k, n in counts.items()])
        return self.figures.get(label), errs

    def put_row(self, label: str, figures: bytes | None, errors: str | None) -> None:
        """Take one stored row (:meth:`row`) back."""
        if figures is not None:
            self.figures[label] = figures
        if errors:
            self.errors[label] = {error_key(code, message): n for code, message, n in json.loads(errors)}


def _span_rate(amount: float, span: float) -> float:
    return round(amount / span, 3) if span > 0 else 0.0


def merge_labels(books: Iterable[Mapping[str, bytes]]) -> list[LabelFigures]:
    """Each label over the containers (their ``figures``), sorted by label.

    Counts, sums and bytes add, min and max combine, histograms add (percentiles of all samples,
    by :func:`histogram_percentile`); throughput and KiB/s are over the label's own span, from its
    first sample's start in any container to its last sample's end in any container.
    """
    acc: dict[str, list[float]] = {}
    hists: dict[str, dict[int, int]] = {}
    for figures in books:
        for label, blob in figures.items():
            (n, err, total, lo, hi, rx, tx, first, last), buckets, counts = unpack(blob)
            a = acc.get(label)
            if a is None:
                a = acc[label] = [0, 0, 0.0, _NONE, _NONE, 0, 0, _NONE, _NONE]
                hists[label] = {}
            a[0] += n
            a[1] += err
            a[2] += total
            a[5] += rx
            a[6] += tx
            # NaN (none yet) never wins a comparison: min/max of the known values.
            for i, value, pick in ((3, lo, min), (4, hi, max), (7, first, min), (8, last, max)):
                if not math.isnan(value):
                    a[i] = value if math.isnan(a[i]) else pick(a[i], value)
            hist = hists[label]
            get = hist.get
            for b, count in zip(buckets, counts, strict=True):
                hist[b] = get(b, 0) + count
    out = []
    for label in sorted(acc):
        n, err, total, lo, hi, rx, tx, first, last = acc[label]
        hist = hists[label]
        span = last - first if not (math.isnan(first) or math.isnan(last)) else 0.0
        p50, p90, p95, p99 = (histogram_percentile(hist, q) for q in (50, 90, 95, 99))
        out.append(
            LabelFigures(
                label=label,
                samples=int(n),
                errors=int(err),
                error_percent=round(err * 100.0 / n, 3) if n else 0.0,
                avg_ms=round(total / n, 3) if n else 0.0,
                min_ms=0.0 if math.isnan(lo) else lo,
                max_ms=0.0 if math.isnan(hi) else hi,
                p50_ms=p50,
                p90_ms=p90,
                p95_ms=p95,
                p99_ms=p99,
                throughput=_span_rate(n, span),
                received_kbps=_span_rate(rx / 1024.0, span),
                sent_kbps=_span_rate(tx / 1024.0, span),
            )
        )
    return out


def merge_errors(books: Iterable[Mapping[str, Mapping[str, int]]]) -> list[ErrorFigures]:
    """Error counts per label, code and message added over the containers; most frequent first
    (then by label, code and message, so that the order is stable)."""
    total: Counter[tuple[str, str]] = Counter()
    for errors in books:
        for label, counts in errors.items():
            for key, n in counts.items():
                total[label, key] += n
    rows = sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))
    out = []
    for (label, key), count in rows:
        code, message = key.split(_SEP, 1)
        out.append(ErrorFigures(label=label, code=code, message=message, count=count))
    return out
