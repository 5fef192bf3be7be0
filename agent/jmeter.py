"""JMeter output parsing: summariser lines into live figures, the JTL into final results.

Both JMeter 2.13 (``in     5s``, ``in   0.3s``) and 5.x (``in 00:00:27``) summariser formats parse,
with or without the ``Active:`` part and with or without a log timestamp in front.
"""

from __future__ import annotations

import csv
import itertools
import math
import re
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from octotui.protocol import FinalResults, JMeterFigures, histogram_percentile, rt_bucket

_NUMBER = r"(?:\d+(?:[.,]\d*)?|[.,]\d+|Infinity|NaN|\?)"
_SUMMARY = re.compile(
    r"\bsummary\s*(?P<kind>[+=])\s*(?P<samples>\d+)\s+in\s+"
    r"(?:(?P<hms>\d+:\d{2}:\d{2})|(?P<secs>\d+(?:[.,]\d+)?)\s*s)\s*=\s*"
    rf"(?P<rate>{_NUMBER})\s*/s\s+"
    r"Avg:\s*(?P<avg>-?\d+)\s+Min:\s*(?P<min>-?\d+)\s+Max:\s*(?P<max>-?\d+)\s+"
    rf"Err:\s*(?P<errors>\d+)\s*\(\s*(?P<errpct>{_NUMBER})\s*%\s*\)"
    r"(?:\s+Active:\s*(?P<active>\d+)\s+Started:\s*(?P<started>\d+)\s+Finished:\s*(?P<finished>\d+))?"
)
# 2.13: "Waiting for possible shutdown message on port 4445"
# 5.x:  "Waiting for possible Shutdown/StopTestNow/HeapDump/ThreadDump message on port 4445"
_SHUTDOWN_PORT = re.compile(r"Waiting for possible \S*(?:shutdown|Shutdown)\S* message on port (\d{1,5})\b")
_ERROR_LINE = re.compile(r"(?:^|\s)(?:ERROR|FATAL)\b|^(?:Error|An error occurred)\b|^\S*(?:Exception|Error):")


def _float(text: str | None) -> float:
    if not text or text in ("NaN", "?"):
        return 0.0
    if text == "Infinity":
        return 0.0
    return float(text.replace(",", "."))


@dataclass(frozen=True, slots=True)
class Summary:
    """One summariser line: ``+`` covers the last interval, ``=`` the whole run so far."""

    kind: str  # "+" or "="
    samples: int
    seconds: float
    rate: float
    avg_ms: float
    min_ms: float
    max_ms: float
    errors: int
    error_percent: float
    active: int | None = None
    started: int | None = None
    finished: int | None = None


def parse_summary(line: str) -> Summary | None:
    """The summariser figures in ``line``, or None when it is not a summariser line."""
    match = _SUMMARY.search(line)
    if match is None:
        return None
    if match["hms"]:
        hours, minutes, secs = (int(part) for part in match["hms"].split(":"))
        seconds = hours * 3600.0 + minutes * 60.0 + secs
    else:
        seconds = _float(match["secs"])
    active = match["active"]
    return Summary(
        kind=match["kind"],
        samples=int(match["samples"]),
        seconds=seconds,
        rate=_float(match["rate"]),
        avg_ms=float(match["avg"]),
        min_ms=float(match["min"]),
        max_ms=float(match["max"]),
        errors=int(match["errors"]),
        error_percent=_float(match["errpct"]),
        active=int(active) if active is not None else None,
        started=int(match["started"]) if active is not None else None,
        finished=int(match["finished"]) if active is not None else None,
    )


def parse_shutdown_port(line: str) -> int | None:
    """The UDP port JMeter listens on for ``StopTestNow``/``Shutdown``, from its start-up line."""
    match = _SHUTDOWN_PORT.search(line)
    if match is None:
        return None
    port = int(match[1])
    return port if 0 < port < 65536 else None


def is_error_line(line: str) -> bool:
    """True for JMeter's own error lines (log level ERROR, ``Error in NonGUIDriver``, exceptions)."""
    return bool(_ERROR_LINE.search(line.strip()))


class FiguresTracker:
    """Folds a stream of JMeter output lines into :class:`JMeterFigures`.

    JMeter prints ``summary =`` only once the run spans more than one interval, so the cumulative
    figures are also built up from ``summary +`` lines; a ``summary =`` line then overrides them
    with JMeter's own totals.
    """

    def __init__(self, max_errors: int = 20) -> None:
        self.figures: JMeterFigures | None = None
        self.shutdown_port: int | None = None
        self.errors: deque[str] = deque(maxlen=max_errors)
        self._has_interval = False

    def feed(self, line: str) -> bool:
        """Take one output line; True when the figures changed."""
        summary = parse_summary(line)
        if summary is None:
            port = parse_shutdown_port(line)
            if port is not None:
                self.shutdown_port = port
            elif is_error_line(line):
                self.errors.append(line.strip()[:500])
            return False
        self.apply(summary)
        return True

    def apply(self, summary: Summary) -> None:
        """Update the figures with one parsed summariser line."""
        fig = self.figures or JMeterFigures()
        update: dict[str, object] = {}
        if summary.kind == "+":
            total = fig.samples + summary.samples
            if summary.samples:
                update["avg_ms"] = (fig.avg_ms * fig.samples + summary.avg_ms * summary.samples) / total
                update["min_ms"] = summary.min_ms if fig.samples == 0 else min(fig.min_ms, summary.min_ms)
                update["max_ms"] = max(fig.max_ms, summary.max_ms)
            errors = fig.errors + summary.errors
            update |= {
                "samples": total,
                "errors": errors,
                "error_percent": 100.0 * errors / total if total else 0.0,
                "rate": summary.rate,
                "interval_samples": summary.samples,
                "interval_avg_ms": summary.avg_ms,
                "interval_errors": summary.errors,
            }
            self._has_interval = True
        else:
            update |= {
                "samples": summary.samples,
                "errors": summary.errors,
                "error_percent": summary.error_percent,
                "avg_ms": summary.avg_ms,
                "min_ms": summary.min_ms,
                "max_ms": summary.max_ms,
            }
            if not self._has_interval:
                update["rate"] = summary.rate
        if summary.active is not None:
            update |= {"active": summary.active, "started": summary.started, "finished": summary.finished}
        self.figures = fig.model_copy(update=update)


def read_jtl(path: Path) -> FinalResults | None:
    """Aggregate a CSV JTL with a header row; None when the file is missing or not such a JTL.

    Rows that do not parse (truncated last line of a killed JMeter, garbage) are skipped.
    """
    jtl = _open_jtl(path, ("timeStamp", "elapsed", "success"))
    if jtl is None:
        return None
    handle, reader, (i_ts, i_el, i_ok) = jtl
    with handle:
        width = max(i_ts, i_el, i_ok)
        histogram: Counter[int] = Counter()  # not a list of every sample: an hour-long run stays small
        count = errors = total_ms = 0
        low, high = math.inf, -math.inf
        first = math.inf
        last = -math.inf
        for row in _rows(reader):
            if len(row) <= width:
                continue
            try:
                ts = int(row[i_ts])
                ms = int(row[i_el])
            except ValueError:
                continue
            ok = row[i_ok].strip().lower()
            if ok not in ("true", "false"):
                continue
            histogram[rt_bucket(ms)] += 1
            count += 1
            total_ms += ms
            low, high = min(low, ms), max(high, ms)
            errors += ok == "false"
            first = min(first, ts)
            last = max(last, ts + ms)
    if not count:
        return FinalResults()
    duration = max((last - first) / 1000.0, 0.0)
    return FinalResults(
        samples=count,
        errors=errors,
        error_percent=100.0 * errors / count,
        throughput=count / duration if duration > 0 else 0.0,
        avg_ms=total_ms / count,
        min_ms=float(low),
        max_ms=float(high),
        p90_ms=histogram_percentile(histogram, 90),
        p95_ms=histogram_percentile(histogram, 95),
        p99_ms=histogram_percentile(histogram, 99),
        duration_s=duration,
        histogram=dict(histogram),
    )


def first_failure(path: Path) -> str | None:
    """The response code and message of the first failed sample of a CSV JTL (JMeter's own words)."""
    jtl = _open_jtl(path, ("success", "responseCode", "responseMessage"))
    if jtl is None:
        return None
    handle, reader, (i_ok, i_code, i_msg) = jtl
    with handle:
        for row in itertools.islice(_rows(reader), 100_000):
            if len(row) > max(i_ok, i_code, i_msg) and row[i_ok].strip().lower() == "false":
                return f"{row[i_code].strip()} {row[i_msg].strip()}".strip()[:300] or None
    return None


def _open_jtl(path: Path, names: tuple[str, ...]) -> tuple[TextIO, Iterator[list[str]], list[int]] | None:
    """The open file, a CSV reader past the header and the index of each named column of a CSV
    JTL; None when the file cannot be opened or has no header naming them all."""
    try:
        handle = path.open(newline="", encoding="utf-8", errors="replace")
    except OSError:
        return None
    reader = csv.reader(handle)
    header = next(_rows(reader), None) or []
    columns = {name.strip(): index for index, name in enumerate(header)}
    if not set(names) <= columns.keys():
        handle.close()
        return None
    return handle, reader, [columns[name] for name in names]


def _rows(reader: Iterator[list[str]]) -> Iterator[list[str]]:
    """The rows csv can read; a row it cannot (e.g. a field over csv's size limit) is skipped."""
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error:
            continue
