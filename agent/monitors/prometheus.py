"""``prometheus``: scrape a Prometheus text page and keep the chosen series, counters as rates.

``metrics`` selects by name (``node_load1``: every series of that name) or by name and labels
(``node_cpu_seconds_total{mode="idle"}``: the series having those labels). Keys are the series as
the source names them, labels sorted: ``node_cpu_seconds_total{cpu="0",mode="idle"}``. Counters
(type counter, a ``_total`` name, a histogram's or summary's ``_count``/``_sum``/``_bucket``) are
kept as per-second rates between two scrapes, so they first appear on the second one.
"""

from __future__ import annotations

import re

from agent.monitors.base import CollectError, Rates, expect_ok
from agent.monitors.httpget import HttpCollector
from octotui.protocol.monitors import MAX_MONITOR_METRICS, MonitorAssignment

_SELECTOR = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')
_CUMULATIVE_SUFFIXES = ("_count", "_sum", "_bucket")
_ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"


def parse_selector(text: str) -> tuple[str, dict[str, str]]:
    """``name{label="v",...}`` as (name, labels); CollectError when it is not one."""
    match = _SELECTOR.match(text.strip())
    if match is None:
        raise CollectError(f"bad metric selector: {text[:100]}")
    name, inner = match.group(1), match.group(2)
    labels: dict[str, str] = {}
    pos = 0
    inner = inner or ""
    while pos < len(inner.rstrip()):
        part = _LABEL.match(inner, pos)
        if part is None:
            raise CollectError(f"bad metric selector: {text[:100]}")
        labels[part.group(1)] = part.group(2).replace('\\"', '"').replace("\\\\", "\\")
        pos = part.end()
    return name, labels


def series_key(name: str, labels: dict[str, str]) -> str:
    if not labels:
        return name
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


class PrometheusCollector(HttpCollector):
    def __init__(self, assignment: MonitorAssignment) -> None:
        super().__init__(assignment)
        self.rates = Rates()
        self._skipped = 0
        self.selectors = [parse_selector(m) for m in self.assignment.metrics]
        self._lines: re.Pattern[str] | None = None
        if self.selectors:
            names = {name for name, _ in self.selectors}
            families = names | {n.removesuffix(s) for n in names for s in (*_CUMULATIVE_SUFFIXES, "_total")}
            alt_names = "|".join(re.escape(n) for n in sorted(names))
            alt_families = "|".join(re.escape(n) for n in sorted(families))
            self._lines = re.compile(rf"^(?:(?:{alt_names})[{{ \t]|# TYPE (?:{alt_families})[ \t]).*$", re.M)

    def _prefilter(self, text: str) -> str:
        """Only the sample lines of the chosen names and their TYPE lines, found by one regular
        expression: the parser is pure Python, and a node-exporter page holds ~1,100 series of
        which a monitor keeps a few (measured: a Python loop over the lines cost ~4 ms a scrape)."""
        self._skipped = 0
        if self._lines is None:
            return text
        kept = self._lines.findall(text)
        samples = sum(1 for line in kept if not line.startswith("#"))
        comments = text.count("\n#") + (1 if text.startswith("#") else 0)
        self._skipped = max(0, text.count("\n") - comments - samples)
        return "\n".join(kept) + "\n"

    def _wanted(self, name: str, labels: dict[str, str]) -> bool:
        if not self.selectors:
            return True
        return any(
            name == want and all(labels.get(k) == v for k, v in want_labels.items())
            for want, want_labels in self.selectors
        )

    async def collect(self) -> dict[str, float]:
        from prometheus_client.parser import text_string_to_metric_families

        page = await self.fetch(_ACCEPT)
        expect_ok(page.status, page.reason)
        try:
            text = page.body.decode("utf-8")
            families = list(text_string_to_metric_families(self._prefilter(text)))
            if not families and text.strip():  # none of the chosen: is it Prometheus text at all?
                head = "\n".join(text.splitlines()[:50]) + "\n"
                if not list(text_string_to_metric_families(head)):
                    raise ValueError("no metric found")
        except (UnicodeDecodeError, ValueError, IndexError, TypeError) as exc:
            first = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            raise CollectError(f"malformed: not Prometheus text ({first})") from None
        values: dict[str, float] = {}
        seen: set[str] = set()
        offered = kept = 0
        for family in families:
            for sample in family.samples:
                if not self._wanted(sample.name, sample.labels):
                    offered += 1
                    continue
                key = series_key(sample.name, sample.labels)
                cumulative = (
                    sample.name.endswith("_total")
                    or family.type == "counter"
                    or (family.type in ("histogram", "summary") and sample.name.endswith(_CUMULATIVE_SUFFIXES))
                )
                if kept >= MAX_MONITOR_METRICS:
                    offered += 1
                    continue
                kept += 1
                if cumulative:
                    seen.add(key)
                    rate = self.rates.rate(key, float(sample.value))
                    if rate is not None:
                        values[key] = rate
                else:
                    values[key] = float(sample.value)
        self.rates.keep_only(seen)
        self.dropped = offered + self._skipped
        return values
