"""The self-contained HTML report of one test: one file, nothing fetched when it opens.

Tables are HTML built here (every string from the test escaped by :func:`html.escape`); the
over-time charts are SVG drawn by the page's own small script from the series, embedded as JSON
(:mod:`.chart_data`: ``<``, ``>`` and ``&`` escaped, so that no text can close the script element). The page's
Content-Security-Policy allows only its own stylesheet and scripts, by their hashes, and no fetch.
"""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from html import escape

from octotui.protocol import VERSION, LabelFigures
from octotui.server.domain.lifecycle import CRITICAL_STOP
from octotui.server.export import assets
from octotui.server.export.chart_data import series_json
from octotui.server.export.data import ExportData, Generator


def _hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


#: Everything the page may use: its own inline stylesheet and two scripts. No network at all.
POLICY = (
    f"default-src 'none'; style-src {_hash(assets.STYLE)}; "
    f"script-src {_hash(assets.CATCH)} {_hash(assets.DRAW)}; img-src data:; base-uri 'none'; form-action 'none'"
)

CHARTS = (
    ("hits", "Hits per second"),
    ("times", "Response time: average, and 95th percentile per interval"),
    ("errors", "Errors per second"),
    ("active", "Active threads"),
    ("bytes", "Bytes per second (received, sent)"),
)
LABEL_CHARTS = (
    ("label-hits", "Hits per second"),
    ("label-errors", "Errors per second"),
    ("label-times", "Response time per interval: average, 95th percentile"),
    ("label-bytes", "Bytes per second (received, sent)"),
)
GENERATOR_CHARTS = (
    ("gen-cpu", "CPU % of each load generator"),
    ("gen-memory", "Memory % of each load generator"),
)


def e(value: object) -> str:
    """Any value as HTML text (quotes too: safe in attributes)."""
    return escape(str(value), quote=True)


def _n(x: float, digits: int = 1) -> str:
    if float(x).is_integer():
        return f"{int(x):,}"
    return f"{x:,.{digits}f}"


def _when(ts: datetime | None) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if ts is not None else "—"


def _span(seconds: float) -> str:
    s = round(seconds)
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h} h {m:02d} min {sec:02d} s" if h else f"{m} min {sec:02d} s"


def _kv(items: Iterable[tuple[str, str]]) -> str:
    """A definition list; values already escaped."""
    return '<dl class="kv">' + "".join(f"<dt>{e(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def _td(x: float, digits: int = 1, cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f'<td{c} data-v="{x!r}">{_n(x, digits)}</td>'


def _label_row(f: LabelFigures, tag: str = "tr") -> str:
    err = " err" if f.errors else ""
    cells = [
        f'<td class="t">{e(f.label)}</td>',
        _td(f.samples),
        _td(f.errors, cls="e"),
        _td(f.error_percent, 2, "e"),
        *(_td(v) for v in (f.avg_ms, f.p50_ms, f.p90_ms, f.p95_ms, f.p99_ms, f.min_ms, f.max_ms)),
        _td(f.throughput, 2),
        _td(f.received_kbps, 2),
        _td(f.sent_kbps, 2),
    ]
    return f'<{tag} class="row{err}">' + "".join(cells) + f"</{tag}>"


_LABEL_HEAD = (
    ("Label", "t"),
    ("Samples", ""),
    ("Errors", ""),
    ("Error %", ""),
    ("Average", ""),
    ("Median", ""),
    ("90%", ""),
    ("95%", ""),
    ("99%", ""),
    ("Min", ""),
    ("Max", ""),
    ("Hits/s", ""),
    ("Recv KB/s", ""),
    ("Sent KB/s", ""),
)


def _head(cols: Iterable[tuple[str, str]]) -> str:
    return "<thead><tr>" + "".join(f'<th class="{c}" scope="col">{e(n)}</th>' for n, c in cols) + "</tr></thead>"


def _labels(data: ExportData) -> str:
    if not data.labels:
        return '<p class="none">No per-label figures were reported for this test.</p>'
    body = "".join(_label_row(f) for f in data.labels)
    foot = _label_row(data.total).replace('<tr class="row', '<tr class="total', 1)
    table = (
        f'<table class="sortable" id="labels">{_head(_LABEL_HEAD)}<tbody>{body}</tbody><tfoot>{foot}</tfoot></table>'
    )
    return f'<p class="sub">Response times in ms; click a column to sort.</p><div class="scroll">{table}</div>'


def _errors(data: ExportData) -> str:
    if not data.errors:
        return '<p class="none">No failed samples.</p>'
    total = data.total.errors or 1
    head = _head((("Label", "t"), ("Code", "t"), ("Message", "t"), ("Count", ""), ("% of errors", "")))
    rows = "".join(
        f'<tr><td class="t">{e(x.label)}</td><td class="t">{e(x.code)}</td><td class="t">{e(x.message)}</td>'
        f"{_td(x.count)}{_td(x.count * 100.0 / total, 2)}</tr>"
        for x in data.errors
    )
    return f'<table class="sortable" id="errors">{head}<tbody>{rows}</tbody></table>'


def _states(g: Generator) -> str:
    counts = Counter(state for _, state, _, _ in g.containers)
    return ", ".join(f"{e(state)} \N{MULTIPLICATION SIGN} {n}" for state, n in sorted(counts.items()))


def _generators(data: ExportData) -> str:
    if not data.generators:
        return '<p class="none">No container was placed.</p>'
    head = _head(
        (
            ("Agent", "t"),
            ("Location", "t"),
            ("Status now", "t"),
            ("Containers", ""),
            ("Final states", "t"),
            ("CPU % mean", ""),
            ("CPU % max", ""),
            ("Memory % max", ""),
        )
    )
    rows = []
    for g in data.generators:
        pct = [
            _td(v) if v is not None else '<td data-v="-1" class="none">—</td>'
            for v in (g.cpu_mean, g.cpu_max, g.memory_max)
        ]
        rows.append(
            f'<tr><td class="t">{e(g.name or g.agent_id)}</td><td class="t">{e(g.location)}</td>'
            f'<td class="t">{e(g.status)}</td>{_td(len(g.containers))}<td class="t">{_states(g)}</td>'
            f"{''.join(pct)}</tr>"
        )
    problems = [
        f"<li><code>{e(cid)}</code> ({e(g.name or g.agent_id)}): {e(state)}"
        + (f", exit code {e(code)}" if code is not None else "")
        + (f": {e(err)}" if err else "")
        + "</li>"
        for g in data.generators
        for cid, state, code, err in g.containers
        if err or (code not in (None, 0))
    ]
    extra = f"<h3>Containers that reported a problem</h3><ul>{''.join(problems)}</ul>" if problems else ""
    kept = any(g.kept for g in data.generators)
    note = (
        "CPU and memory of each agent's host while it ran the test's containers (kept with the test)."
        if kept
        else "CPU and memory from the agents' recent host samples (this test kept none of its own)."
    )
    charts = (
        '<div class="charts">' + "".join(_figure(key, title) for key, title in GENERATOR_CHARTS) + "</div>"
        if data.generator_series
        else ""
    )
    table = f'<table class="sortable" id="generators">{head}<tbody>{"".join(rows)}</tbody></table>'
    return f'<p class="sub">{e(note)}</p>{table}{charts}{extra}'


def _figure(key: str, title: str) -> str:
    return f'<figure data-chart="{key}" data-title="{e(title)}"><figcaption>{e(title)}</figcaption></figure>'


def _per_label(data: ExportData) -> str:
    """The per-label charts with a picker (every label's series is in the page's data)."""
    if not data.label_series:
        return '<p class="none">No per-label series was kept for this test.</p>'
    options = "".join(f'<option value="{i}">{e(x.name)}</option>' for i, x in enumerate(data.label_series))
    pick = f'<p class="pick"><label for="label-pick">Label </label><select id="label-pick">{options}</select></p>'
    return pick + '<div class="charts">' + "".join(_figure(k, t) for k, t in LABEL_CHARTS) + "</div>"


def _criteria(data: ExportData) -> str:
    """The pass/fail criteria as the server decided them (none: no section)."""
    t = data.test
    if not t.criteria:
        return ""
    head = _head(
        (("Criterion", "t"), ("Label", "t"), ("Threshold", ""), ("Actual", ""), ("Result", "t"), ("Detail", "t"))
    )
    rows = []
    for c in t.criteria:
        result, cls = ("passed", "pass") if c.passed else ("failed", "fail") if c.passed is False else ("undecided", "")
        actual = _td(c.actual, 2) if c.actual is not None else '<td data-v="-1" class="none">—</td>'
        rows.append(
            f'<tr><td class="t"><code>{e(c.expr)}</code></td><td class="t">{e(c.label or "whole test")}</td>'
            f"<td data-v={c.threshold!r}>{e(c.op)} {_n(c.threshold, 2)}</td>{actual}"
            f'<td class="t {cls}">{e(result)}</td><td class="t">{e(c.detail)}</td></tr>'
        )
    verdict = f"verdict: {t.verdict}" if t.verdict else "verdict: not decided yet"
    return (
        f'<section id="criteria"><h2>Criteria</h2><p class="sub" id="criteria-verdict">{e(verdict)}</p>'
        f'<table class="sortable" id="criteria-table">{head}<tbody>{"".join(rows)}</tbody></table></section>'
    )


def _monitor_title(name: str, metric: str) -> str:
    return f"{name} · {metric}"


def _monitors(data: ExportData) -> str:
    """The monitors the test named: a chart per metric kept with it (on the test's time axis, its
    alarms marked), the alarms table, and the critical alarm that stopped it (none named: no section)."""
    if not data.monitors and not data.alarms:
        return ""
    t = data.test
    parts = []
    if t.reason and t.reason.startswith(f"stopped by {CRITICAL_STOP}:"):  # stopping.stop_test's words
        alarm = t.reason.split(" before its planned end", 1)[0]  # the rest is in the header's banner
        parts.append(f'<div class="banner bad" id="critical-stop">S{e(alarm[1:])}</div>')
    if data.monitor_series:
        parts.append(
            '<p class="sub">Each monitor metric kept with the test, on the time axis of the charts above; '
            "alarms marked: a solid line where one was raised, a dashed one where it ended (red: critical, "
            "amber: warning), the time between shaded.</p>"
        )
        figures = "".join(
            _figure(f"mon-{i}", _monitor_title(x.monitor_name or x.monitor, x.metric))
            for i, x in enumerate(data.monitor_series)
        )
        parts.append(f'<div class="charts">{figures}</div>')
    else:
        parts.append('<p class="none">No monitor metric was kept with this test.</p>')
    parts.append("<h3>Alarms</h3>")
    if data.alarms:
        head = _head(
            (("Monitor", "t"), ("Metric", "t"), ("Severity", "t"), ("Threshold", "t"), ("Started", "t"),
             ("Ended", "t"), ("Value", ""))
        )  # fmt: skip
        rows = "".join(
            f'<tr class="row{" err" if a.severity == "critical" else ""}">'
            f'<td class="t">{e(a.monitor_name or a.monitor)}</td><td class="t">{e(a.metric)}</td>'
            f'<td class="t e">{e(a.severity)}</td><td class="t">{e(a.threshold)}</td>'
            f'<td class="t">{e(_when(a.started_at))}</td><td class="t">'
            f"{e(_when(a.ended_at)) if a.ended_at else 'still raised'}</td>"
            + (_td(a.value, 2) if a.value is not None else '<td data-v="-1" class="none">—</td>')
            + "</tr>"
            for a in data.alarms
        )
        parts.append(f'<table class="sortable" id="alarms">{head}<tbody>{rows}</tbody></table>')
    else:
        parts.append('<p class="none">No alarm was raised during the test.</p>')
    return f'<section id="monitors-section"><h2>Monitors</h2>{"".join(parts)}</section>'


def _settings(data: ExportData) -> str:
    t = data.test
    props = t.properties
    items = [
        ("Plan", e(data.plan_name) if data.plan_name else '<span class="none">unnamed</span>'),
        ("Provider", e(t.provider_name or t.provider)),
        ("Locations", e(", ".join(t.locations)) if t.locations else '<span class="none">any</span>'),
        ("Image", f"<code>{e(t.image)}</code>"),
        ("Containers", e(len(t.containers))),
        *((k.capitalize(), e(props[k])) for k in ("users", "duration", "rampup") if k in props),
    ]
    if props:
        rows = "".join(
            f'<tr><td class="t"><code>{e(k)}</code></td><td class="t">{e(v)}</td></tr>'
            for k, v in sorted(props.items())
        )
        table = f'<table id="properties">{_head((("Property", "t"), ("Value", "t")))}<tbody>{rows}</tbody></table>'
    else:
        table = '<p class="none">No JMeter properties.</p>'
    return _kv(items) + "<h3>JMeter properties (-J)</h3>" + table


def _side(now: float | None, before: float | None, digits: int = 1) -> str:
    """A figure of this run beside the baseline's (— where a run lacks the label)."""

    def one(x: float | None) -> str:
        return "—" if x is None else _n(x, digits)

    return f'<td data-v="{now if now is not None else -1!r}">{one(before)} → {one(now)}</td>'


def _comparison(data: ExportData) -> str:
    """The "Compared with" section: each label against the baseline, regressions marked."""
    c = data.comparison
    if c is None:
        return ""
    tol = c.tolerances
    head = _head(
        (("Label", "t"), ("Average ms", ""), ("95% ms", ""), ("Error %", ""), ("Hits/s", ""), ("Regression", "t"))
    )
    rows = "".join(
        f'<tr class="row{" err" if d.regression else ""}"><td class="t">{e(d.label)}</td>'
        f"{_side(d.avg_ms, d.baseline_avg_ms)}{_side(d.p95_ms, d.baseline_p95_ms)}"
        f"{_side(d.error_percent, d.baseline_error_percent, 2)}{_side(d.throughput, d.baseline_throughput, 2)}"
        f'<td class="t e">{e("; ".join(d.reasons)) if d.reasons else "—"}</td></tr>'
        for d in c.labels
    )
    rule = (
        f"baseline → this run; a regression: average or 95th percentile up by more than "
        f"{_n(tol.get('avg_ms', 0))} % / {_n(tol.get('p95_ms', 0))} %, error % up by more than "
        f"{_n(tol.get('error_percent', 0))} points, or throughput down by more than {_n(tol.get('throughput', 0))} %"
    )
    verdict = f"{c.regressions} label(s) regressed" if c.regressions else "no regression"
    return (
        f'<section id="comparison"><h2>Compared with {e(data.baseline_name)} '
        f'<code>{e(c.baseline_id)}</code></h2><p class="sub">{e(verdict)}; {e(rule)}.</p>'
        f'<div class="scroll"><table class="sortable" id="compare">{head}<tbody>{rows}</tbody></table></div></section>'
    )


def _times(data: ExportData) -> str:
    t = data.test
    end = t.ended_at.timestamp() if t.ended_at else data.generated_at
    ran = _span(end - t.started_at.timestamp()) if t.started_at else "—"
    return _kv(
        [
            ("Created", e(_when(t.created_at))),
            ("Started", e(_when(t.started_at))),
            ("Ended", e(_when(t.ended_at)) if t.ended_at else "not yet"),
            ("Ran", e(ran + (" so far" if data.live and t.started_at else ""))),
        ]
    )


def _summary(data: ExportData) -> str:
    f = data.total
    cards = [
        ("Samples", _n(f.samples)),
        (f"Errors ({f.error_percent:.2f} %)", _n(f.errors)),
        ("Hits/s", _n(f.throughput, 2)),
        ("Average", f"{_n(f.avg_ms)} ms"),
        ("Median", f"{_n(f.p50_ms)} ms"),
        ("90th pct", f"{_n(f.p90_ms)} ms"),
        ("95th pct", f"{_n(f.p95_ms)} ms"),
        ("99th pct", f"{_n(f.p99_ms)} ms"),
        ("Min", f"{_n(f.min_ms)} ms"),
        ("Max", f"{_n(f.max_ms)} ms"),
        ("Received", f"{_n(f.received_kbps, 2)} KB/s"),
        ("Sent", f"{_n(f.sent_kbps, 2)} KB/s"),
    ]
    return (
        '<div class="cards">'
        + "".join(f'<div class="card"><div class="v">{e(v)}</div><div class="k">{e(k)}</div></div>' for k, v in cards)
        + "</div>"
    )


def render(data: ExportData) -> str:
    """The whole page."""
    t = data.test
    verdict = data.verdict
    banners = []
    if data.live:
        banners.append(
            '<div class="banner" id="live">live — the test is still running: these are its figures at '
            f"{e(datetime.fromtimestamp(data.generated_at, UTC).strftime('%H:%M:%S UTC'))}</div>"
        )
    if t.reason:
        cls = " bad" if t.state == "failed" else ""
        banners.append(f'<div class="banner{cls}" id="reason">{e(t.reason)}</div>')
    banners.extend(f'<div class="banner">{e(n)}</div>' for n in data.notes)
    banners.extend(f'<div class="banner warn" data-warning="">{e(w)}</div>' for w in t.warnings)
    charts = "".join(_figure(key, title) for key, title in CHARTS)
    badge = f'<span class="badge {e(t.verdict)}" id="criteria-badge">{e(t.verdict)}</span>' if t.verdict else ""
    generated = datetime.fromtimestamp(data.generated_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{POLICY}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="octotui {e(VERSION)}">
<title>{e(t.name)} — octotui test report</title>
<style>{assets.STYLE}</style></head>
<body data-state="{e(t.state)}" data-verdict="{e(verdict)}">
<div id="page-errors" hidden></div>
<script>{assets.CATCH}</script>
<header><h1>{e(t.name)}<span class="badge {e(verdict)}" id="verdict">{e(verdict)}</span>{badge}</h1>
<div class="sub">test <code>{e(t.id)}</code> · state {e(t.state)} · generated {e(generated)}</div></header>
{"".join(banners)}
<section id="summary"><h2>Summary</h2>{_summary(data)}</section>
{_criteria(data)}
<section id="statistics"><h2>Statistics per label</h2>{_labels(data)}</section>
{_comparison(data)}
<section id="charts-section"><h2>Over time</h2>
<noscript><p class="none">The charts are drawn by the page's script.</p></noscript>
<div class="charts">{charts}</div>
<h3>Per label</h3>{_per_label(data)}</section>
{_monitors(data)}
<section id="errors-section"><h2>Errors</h2>{_errors(data)}</section>
<section id="settings"><h2>Settings</h2>{_settings(data)}</section>
<section id="times"><h2>Times</h2>{_times(data)}</section>
<section id="generators-section"><h2>Generators</h2>{_generators(data)}</section>
<footer>octotui {e(VERSION)} · the figures per label are merged over every container; percentiles from
merged histograms (exact below 1 s, within 0.5 % above).</footer>
<script type="application/json" id="report-data">{series_json(data)}</script>
<script>{assets.DRAW}</script>
</body></html>
"""
