"""The per-label statistics CSV: JMeter's Aggregate Report columns, one row per label and a TOTAL row.

Numbers are plain (no ``%`` sign, no ``/sec``, a dot for decimals) and equal what
``GET /tests/{id}/labels`` answers: response times in ms, ``Error %`` in percent, throughput in
samples per second, KB/sec in KiB per second (as JMeter's). A label a spreadsheet would run as a
formula (starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) is written with a
leading ``'`` (OWASP's advice against CSV injection).
"""

from __future__ import annotations

import csv
import io

from octotui.protocol import LabelFigures
from octotui.server.export.data import ExportData

HEADER = (
    "Label",
    "# Samples",
    "Average",
    "Median",
    "90% Line",
    "95% Line",
    "99% Line",
    "Min",
    "Max",
    "Error %",
    "Throughput (/s)",
    "Received KB/sec",
    "Sent KB/sec",
)
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def number(x: float) -> str:
    """``12`` for a whole number, else Python's shortest exact form (``4.681``)."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def cell_text(text: str) -> str:
    """Text as a spreadsheet shows it, never as a formula it runs."""
    return "'" + text if text.startswith(_FORMULA) else text


def row(f: LabelFigures) -> list[str]:
    values = (f.avg_ms, f.p50_ms, f.p90_ms, f.p95_ms, f.p99_ms, f.min_ms, f.max_ms, f.error_percent)
    rates = (f.throughput, f.received_kbps, f.sent_kbps)
    return [cell_text(f.label), str(f.samples), *map(number, values), *map(number, rates)]


def render(data: ExportData) -> str:
    """The CSV (``\\r\\n`` line ends, as RFC 4180 says): header, labels sorted by name, TOTAL last."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(HEADER)
    w.writerows(row(f) for f in data.labels)
    w.writerow(row(data.total))
    return out.getvalue()
