"""What the monitors screens say, as pure functions: threshold lines read and written, a monitor's
state and last values in words, the rows of the monitors and alarms tables, alarms marked on a
chart's columns, a monitor read at a test's times, and how often a screen fetches them again."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from octotui.protocol import Alarm, Monitor, MonitorSample, Threshold
from octotui.protocol.monitors import TestMonitors  # not re-exported by the package
from octotui.tui.widgets.keyed_table import Cell

KINDS = ("prometheus", "http", "nginx", "apache", "postgresql", "linux-ssh")
MODES = ("always", "tests")
#: The alarms table's length: every raised one, then the most recent cleared ones.
ALARMS_SHOWN = 50
#: What the target field expects, by kind.
TARGET_HINTS = {
    "prometheus": "http://host:9100/metrics",
    "http": "https://host/health",
    "nginx": "http://host/stub_status",
    "apache": "http://host/server-status?auto",
    "postgresql": "host:5432/dbname",
    "linux-ssh": "host:22",
}
SEVERITY_STYLE = {"critical": "error", "warning": "warning"}
STATE_STYLE = {"ok": "success", "error": "error", "offline": "error", "pending": "warning", "idle": None}
READ_ONLY = "read-only: changing monitors is disabled (a read-only token sees monitors and values only)"


def number(value: float) -> str:
    """A metric's value, short: ``4``, ``0.125``, ``1.23e+06``."""
    if value != value:  # NaN
        return "nan"
    if abs(value) >= 1e6 or (value and abs(value) < 1e-3):
        return f"{value:.3g}"
    return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"


def seconds_text(value: float) -> str:
    return f"{value:g}s"


def threshold_text(t: Threshold) -> str:
    """A threshold as the form takes it: ``node_load1 critical above 4 for 30s``."""
    parts = [t.metric, t.severity]
    if t.above is not None:
        parts += ["above", number(t.above)]
    if t.below is not None:
        parts += ["below", number(t.below)]
    if t.for_s:
        parts += ["for", seconds_text(t.for_s)]
    return " ".join(parts)


_KEYWORDS = ("warning", "critical", "above", "below", "for")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")


def _duration(text: str) -> float | None:
    match = _DURATION.match(text.lower())
    if match is None:
        return None
    scale = {"ms": 0.001, "s": 1.0, None: 1.0, "m": 60.0, "h": 3600.0}[match.group(2)]
    return float(match.group(1)) * scale


def to_float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None


def parse_threshold(line: str) -> Threshold | str:
    """One threshold line (``METRIC [warning|critical] [above X] [below Y] [for 30s]``), or why not."""
    words = line.split()
    at = next((i for i, w in enumerate(words) if w.lower() in _KEYWORDS), len(words))
    if at == 0:
        return "starts with the metric's name, e.g. node_load1 critical above 4 for 30s"
    metric = " ".join(words[:at])
    fields: dict[str, Any] = {"metric": metric}
    rest = words[at:]
    i = 0
    while i < len(rest):
        word = rest[i].lower()
        if word in ("warning", "critical"):
            if "severity" in fields:
                return "one severity: warning or critical"
            fields["severity"] = word
            i += 1
            continue
        if word not in ("above", "below", "for"):
            return f"unexpected {rest[i]!r}: warning|critical, above X, below Y, for 30s"
        if i + 1 >= len(rest):
            return f"{word} needs a value" + (", e.g. for 30s" if word == "for" else ", e.g. above 4")
        key = "for" if word == "for" else word
        if key in fields:
            return f"{word} given twice"
        value = _duration(rest[i + 1]) if word == "for" else to_float(rest[i + 1])
        if value is None:
            return f"{word} {rest[i + 1]!r}: " + ("a duration, e.g. 30s or 2m" if word == "for" else "not a number")
        fields[key] = value
        i += 2
    if "above" not in fields and "below" not in fields:
        return "say when it alarms: above X, below Y, or both (a range)"
    try:
        return Threshold.model_validate(fields)
    except ValidationError as exc:
        return first_error(exc)


def parse_thresholds(text: str) -> tuple[list[Threshold], str | None]:
    """Every non-empty line of ``text`` as a threshold, or the first line's problem (``line 2: …``)."""
    out: list[Threshold] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parsed = parse_threshold(line.strip())
        if isinstance(parsed, str):
            return out, f"threshold line {n}: {parsed}"
        out.append(parsed)
    return out, None


def split_metrics(text: str) -> list[str]:
    """Metric names separated by commas or new lines (a label selector may hold a comma: kept)."""
    out: list[str] = []
    depth = 0
    word = ""
    for ch in text:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth = max(0, depth - 1)
        if ch in ",\n" and depth == 0:
            if word.strip():
                out.append(word.strip())
            word = ""
        else:
            word += ch
    if word.strip():
        out.append(word.strip())
    return out


def first_error(exc: ValidationError) -> str:
    """A pydantic error said in one line: ``interval: must be at least 1``."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"] if not isinstance(p, int)) or "value"
    message = str(err["msg"]).removeprefix("Value error, ")
    message = message.replace("Input should be greater than or equal to", "must be at least")
    message = message.replace("Input should be less than or equal to", "must be at most")
    message = message.replace("Input should be greater than", "must be more than")
    return f"{where}: {message}"


def state_words(m: Monitor) -> str:
    """A monitor's state in words: ``ok``, ``error: authentication failed``, ``idle (runs with tests)``."""
    if m.state == "error":
        return f"error: {m.error}" if m.error else "error"
    if m.state == "idle":
        return "idle (runs with tests)"
    if m.state == "offline":
        return "offline (its agent is offline)"
    if m.state == "pending":
        return "pending (no report yet)"
    return "ok"


def shown_metrics(m: Monitor) -> list[str]:
    """The metrics worth showing first: those with thresholds, then the chosen ones, then the rest."""
    order = [t.metric for t in m.thresholds] + list(m.metrics) + sorted(m.last_values)
    return [name for name in dict.fromkeys(order) if name in m.last_values]


def last_values(m: Monitor, limit: int = 4) -> str:
    names = shown_metrics(m)
    text = "  ".join(f"{name}={number(m.last_values[name])}" for name in names[:limit])
    if len(names) > limit:
        text += f"  (+{len(names) - limit})"
    return text or "-"


def clock(when: datetime | None) -> str:
    """A time of day (local), with the date when not today."""
    if when is None:
        return ""
    local = when.astimezone()
    if local.date() == datetime.now().astimezone().date():
        return local.strftime("%H:%M:%S")
    return local.strftime("%m-%d %H:%M")


def monitor_rows(monitors: Iterable[Monitor]) -> dict[str, list[Cell]]:
    rows: dict[str, list[Cell]] = {}
    for m in monitors:
        alarms = Cell(str(m.alarms) if m.alarms else "", "error" if m.alarms else None, sort=-m.alarms)
        rows[m.id] = [
            Cell(m.name),
            Cell(m.agent_name or m.agent[:8]),
            Cell(m.kind),
            Cell(m.target),
            # in error, the error itself (its colour says it is one): the line under the table has both
            Cell(m.error if m.state == "error" and m.error else state_words(m), STATE_STYLE.get(m.state)),
            alarms,
            Cell(last_values(m, 3)),
        ]
    return rows


def alarm_rows(alarms: Iterable[Alarm]) -> tuple[dict[str, list[Cell]], dict[str, Any]]:
    """The alarms table's rows, and their order: raised ones first, then the newest."""
    rows: dict[str, list[Cell]] = {}
    order: dict[str, Any] = {}
    for a in alarms:
        key = str(a.id)
        active = a.ended_at is None
        rows[key] = [
            Cell(a.severity, SEVERITY_STYLE.get(a.severity)),
            Cell(a.monitor_name or a.monitor[:8]),
            Cell(a.metric),
            Cell(clock(a.started_at), sort=a.started_at.timestamp()),
            Cell("active" if active else clock(a.ended_at), "error" if active else None),
            Cell(number(a.value) if a.value is not None else "", sort=a.value),
            Cell(a.threshold),
        ]
        order[key] = (0 if active else 1, -a.started_at.timestamp())
    return rows, order


def missing_raised(recent: Sequence[Alarm], monitors: Sequence[Monitor]) -> bool:
    """True when the monitors count more raised alarms than the newest ``recent`` hold (raised long
    ago, then many others raised and cleared): the table must still list every raised one."""
    return sum(1 for a in recent if a.ended_at is None) < sum(m.alarms for m in monitors)


def with_raised(raised: Sequence[Alarm], recent: Sequence[Alarm]) -> list[Alarm]:
    """Every raised alarm, then the recent ones not among them."""
    known = {a.id for a in raised}
    return [*raised, *(a for a in recent if a.id not in known)]


def alarm_line(a: Alarm) -> str:
    """One alarm in full words."""
    end = "still raised" if a.ended_at is None else f"cleared at {clock(a.ended_at)}"
    value = f" at {number(a.value)}" if a.value is not None else ""
    test = f" · during test {a.test_id}" if a.test_id else ""
    return (
        f"{a.severity} · {a.monitor_name or a.monitor} · {a.metric}{value} ({a.threshold})"
        f" · raised at {clock(a.started_at)}, {end}{test}"
    )


def monitor_line(m: Monitor) -> str:
    """The selected monitor in full: at 80 columns the table cuts targets, errors and values."""
    creds = f" · credentials: {', '.join(m.credentials_set)}" if m.credentials_set else ""
    head = f"{m.name} · {m.kind} {m.target} every {m.interval:g}s ({m.mode}) on {m.agent_name or m.agent}{creds}"
    lines = [head, state_words(m) + (f" · {m.alarms} alarm(s) raised" if m.alarms else "")]
    values = last_values(m, 8)
    if values != "-":
        lines.append(values)
    return "\n".join(lines)


#: The fastest and slowest a screen fetches its monitors again: a monitor's new values come once
#: per its interval, so a screen whose monitors all collect every 10 s asks every 5 s, not every round.
FETCH_MIN_S = 1.0
FETCH_MAX_S = 5.0


def fetch_period(intervals: Iterable[float]) -> float:
    """How often a screen showing monitors of these collection intervals fetches them again."""
    shortest = min(intervals, default=FETCH_MAX_S)
    return min(max(shortest / 2, FETCH_MIN_S), FETCH_MAX_S)


# --- charts: alarms on their columns, a monitor on a test's times ---------------------------


def alarm_marks(alarms: Sequence[Alarm], metric: str, at: Sequence[float], origin: float, now: float) -> str:
    """One character per chart column: ``▲`` where an alarm of ``metric`` was raised, ``━`` while
    it stayed raised, blank elsewhere; ``at``: each column's first time, in seconds since ``origin``."""
    marks = [" "] * len(at)
    if not at:
        return ""
    for a in alarms:
        if a.metric != metric:
            continue
        start = a.started_at.timestamp() - origin
        end = (a.ended_at.timestamp() if a.ended_at else now) - origin
        first = True
        for i, t in enumerate(at):
            t_next = at[i + 1] if i + 1 < len(at) else t + 1e-9
            if t_next > start and t <= end:
                if first:
                    marks[i] = "▲"
                    first = False
                elif marks[i] == " ":
                    marks[i] = "━"
    return "".join(marks)


def latest(samples: Sequence[MonitorSample], metric: str) -> float | None:
    """The newest value of ``metric`` in ``samples``."""
    for s in reversed(samples):
        if metric in s.values:
            return s.values[metric]
    return None


def on_times(points: Sequence[tuple[float, float]], stamps: Sequence[float]) -> tuple[float, ...]:
    """``points`` (``(ts, value)``, oldest first) read at each of ``stamps``: the latest value at or
    before it (0 before the first), so that a monitor's chart has the response times' columns."""
    out: list[float] = []
    i, value = 0, 0.0
    for ts in stamps:
        while i < len(points) and points[i][0] <= ts:
            value = points[i][1]
            i += 1
        out.append(value)
    return tuple(out)


def alarm_short(a: Alarm) -> str:
    """One alarm on one line of 80 columns: ``critical node node_load1 9 (above 4) 21:52:05-21:52:15``."""
    value = f" {number(a.value)}" if a.value is not None else ""
    when = f"{clock(a.started_at)}-{clock(a.ended_at)}" if a.ended_at else f"raised since {clock(a.started_at)}"
    return f"{a.severity} {a.monitor_name or a.monitor[:8]} {a.metric}{value} ({a.threshold}) {when}"


def pane_head(tm: TestMonitors) -> str:
    """The pane's head: the monitors kept with the test and its alarms, raised ones first."""
    if not tm.monitors:
        return "no monitor kept with this test (name some in the launch dialog's Monitors field)"
    names = sorted({s.monitor_name or s.monitor[:8] for s in tm.series}) or [m[:8] for m in tm.monitors]
    head = f"{len(tm.monitors)} monitor(s): {', '.join(names)}"
    if tm.stop_on_critical:
        head += " · stops on a critical alarm"
    raised = [a for a in tm.alarms if a.ended_at is None]
    if tm.alarms:
        head += f" · {len(tm.alarms)} alarm(s), {len(raised)} raised"
        shown = sorted(tm.alarms, key=lambda a: (a.ended_at is not None, -a.started_at.timestamp()))[0]
        head += "\n" + alarm_short(shown)
    else:
        head += " · no alarm · n: next metrics"
    return head
