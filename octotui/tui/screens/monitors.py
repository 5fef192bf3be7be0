"""Monitors of the servers under test: the list (state in words, last values, active alarms), the
alarms table (active first, then recent), the form that adds or edits one (admins only), and the
badge the main screen shows while alarms are raised.

Nothing here polls on its own timer: each screen fetches once per round of the app's poll worker
(it watches the app's ``connection``, set after every round), only while it is on top, and never
two fetches at once. Credentials are typed into masked inputs, sent once and cleared: the server
never shows them again (a monitor says only which fields are set).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from pydantic import ValidationError
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Input, Label, Select, Static, TextArea

from octotui.client import ClientError, ServerUnreachable
from octotui.protocol import Agent, Alarm, Monitor, MonitorCreate, MonitorCredentials, MonitorUpdate, Threshold
from octotui.tui.dashboard import DashboardApp
from octotui.tui.screens.base import DashboardScreen
from octotui.tui.screens.confirm import ConfirmScreen
from octotui.tui.state import Connection
from octotui.tui.widgets.keyed_table import Cell, Column, KeyedTable

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


# --- words, without Textual -------------------------------------------------------------------


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


def _float(text: str) -> float | None:
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
        value = _duration(rest[i + 1]) if word == "for" else _float(rest[i + 1])
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


# --- tables -----------------------------------------------------------------------------------


class MonitorsTable(KeyedTable):
    COLUMNS = (
        Column("name", "Name", 10),
        Column("agent", "Agent", 6),
        Column("kind", "Kind", 10),
        Column("target", "Target", 13),
        Column("state", "State", 15),
        Column("alarms", "!", 2, "right"),
        Column("values", "Last values", 8, stretch=True),
    )


class AlarmsTable(KeyedTable):
    COLUMNS = (
        Column("severity", "Sev", 8),
        Column("monitor", "Monitor", 10),
        Column("metric", "Metric", 14),
        Column("since", "Raised", 8),
        Column("ended", "Cleared", 8),
        Column("value", "Value", 7, "right"),
        Column("threshold", "Threshold", 8, stretch=True),
    )


# --- fetching once per poll round -------------------------------------------------------------


#: The fastest and slowest a screen fetches its monitors again: a monitor's new values come once
#: per its interval, so a screen whose monitors all collect every 10 s asks every 5 s, not every round.
FETCH_MIN_S = 1.0
FETCH_MAX_S = 5.0


def fetch_period(intervals: Iterable[float]) -> float:
    """How often a screen showing monitors of these collection intervals fetches them again."""
    shortest = min(intervals, default=FETCH_MAX_S)
    return min(max(shortest / 2, FETCH_MIN_S), FETCH_MAX_S)


class RoundFetcher:
    """Runs ``fetch`` after a round of the app's poll worker while ``screen`` is shown, at most
    every ``period`` seconds, one at a time: a round that comes while the previous fetch is still
    out, or too soon after it, is skipped, not queued. :meth:`now` fetches at once (after a change)."""

    def __init__(self, screen: DashboardScreen) -> None:
        self.screen = screen
        self.busy = False
        self.period = FETCH_MIN_S
        self._at = 0.0

    def start(self) -> None:
        self.screen.watch(self.screen.app, "connection", self._round, init=False)

    def _round(self, connection: Connection) -> None:
        due = time.monotonic() - self._at >= self.period - 0.05  # a round's jitter is not a skip
        if connection.state == "ok" and due and not self.busy and self.screen.feeding:
            self.now()

    def now(self) -> None:
        if self.busy:
            return
        self.busy = True
        self._at = time.monotonic()
        self.screen.run_worker(self._run(), group="round-fetch", exit_on_error=False)

    async def _run(self) -> None:
        try:
            await self.screen.fetch()  # type: ignore[attr-defined]
        except ClientError:
            pass  # the status bar already says why the server does not answer
        finally:
            self.busy = False


# --- the list ---------------------------------------------------------------------------------


class MonitorsScreen(DashboardScreen):
    """Every monitor with its state, last values and raised alarms, and the alarms table."""

    DEFAULT_CSS = """
    MonitorsScreen #monitors-title, MonitorsScreen #alarms-title { padding: 0 1; color: $text-muted; height: 1; }
    MonitorsScreen #monitors { height: 1fr; min-height: 4; }
    MonitorsScreen #monitor-line { padding: 0 1; height: 3; color: $text-muted; }
    MonitorsScreen #alarms { height: 7; }
    """
    BINDINGS: ClassVar = [
        Binding("escape", "back", "Back"),
        Binding("enter", "open", "Detail", show=False),
        Binding("n", "new", "New"),
        Binding("e", "edit", "Edit"),
        Binding("delete", "delete", "Delete"),
        Binding("tab", "next_table", "Table", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.monitors: dict[str, Monitor] = {}
        self.alarms: list[Alarm] = []
        self.loaded = False
        self.error = ""
        self._line = ""
        self.fetcher = RoundFetcher(self)

    def compose(self) -> ComposeResult:
        yield self.status_bar()
        yield Label("Monitors · loading…", id="monitors-title", markup=False)
        yield MonitorsTable(id="monitors")
        yield Static("", id="monitor-line", markup=False)
        yield Label("Alarms · raised first, then the latest cleared", id="alarms-title", markup=False)
        yield AlarmsTable(id="alarms")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(MonitorsTable).focus()
        self.fetcher.start()
        self.fetcher.now()

    def action_back(self) -> None:
        self.dismiss()

    def resync(self) -> None:
        self.fetcher.now()

    async def fetch(self) -> None:
        client = self.app.actions.client
        try:
            monitors = await client.monitors()
            alarms = await client.alarms(limit=ALARMS_SHOWN)
            if missing_raised(alarms, monitors):
                alarms = with_raised(await client.alarms(active=True, limit=1000), alarms)
        except ServerUnreachable:
            return
        except ClientError as exc:
            self.error = exc.message
            self.query_one("#monitors-title", Label).update(f"Monitors unavailable: {exc.message}")
            return
        self.show(monitors, alarms)

    def show(self, monitors: list[Monitor], alarms: list[Alarm]) -> None:
        self.fetcher.period = fetch_period(m.interval for m in monitors)
        self.loaded = True
        self.error = ""
        self.monitors = {m.id: m for m in monitors}
        self.alarms = alarms
        raised = sum(1 for a in alarms if a.ended_at is None)
        erring = sum(1 for m in monitors if m.state == "error")
        title = f"Monitors · {len(monitors)}"
        if erring:
            title += f" · {erring} in error"
        title += f" · {raised} alarm(s) raised" if raised else " · no alarm raised"
        if not monitors:
            title += " · n adds one" if not self.app.read_only else ""
        self.query_one("#monitors-title", Label).update(title)
        self.query_one(MonitorsTable).sync(monitor_rows(monitors))
        rows, order = alarm_rows(alarms)
        self.query_one(AlarmsTable).sync(rows, order)
        self._show_line()

    def _selected(self) -> Monitor | None:
        return self.monitors.get(self.query_one(MonitorsTable).selected_key or "")

    def _show_line(self) -> None:
        if self.focused is self.query_one(AlarmsTable):
            key = self.query_one(AlarmsTable).selected_key
            alarm = next((a for a in self.alarms if str(a.id) == key), None)
            line = alarm_line(alarm) if alarm else ""
        else:
            monitor = self._selected()
            line = monitor_line(monitor) if monitor else ""
        if line != self._line:
            self._line = line
            self.query_one("#monitor-line", Static).update(line)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_line()

    def on_descendant_focus(self) -> None:
        self._show_line()

    def action_next_table(self) -> None:
        monitors, alarms = self.query_one(MonitorsTable), self.query_one(AlarmsTable)
        (alarms if self.focused is monitors else monitors).focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table is self.query_one(MonitorsTable):
            self.action_open()
        else:
            alarm = next((a for a in self.alarms if str(a.id) == event.row_key.value), None)
            if alarm is not None:
                self._open(alarm.monitor)

    def action_open(self) -> None:
        monitor = self._selected()
        if monitor is None:
            self.app.notify("No monitor selected", severity="warning")
            return
        self._open(monitor.id)

    def _open(self, monitor_id: str) -> None:
        from octotui.tui.screens.monitor import MonitorScreen

        self.app.push_screen(MonitorScreen(monitor_id))

    def _refused(self) -> bool:
        if self.app.read_only:
            self.app.notify(READ_ONLY, severity="warning")
            return True
        return False

    def action_new(self) -> None:
        if not self._refused():
            self.app.push_screen(MonitorForm(self.app.agents), self._changed)

    def action_edit(self) -> None:
        if self._refused():
            return
        monitor = self._selected()
        if monitor is None:
            self.app.notify("No monitor selected", severity="warning")
            return
        self.app.push_screen(MonitorForm(self.app.agents, monitor), self._changed)

    def action_delete(self) -> None:
        if self._refused():
            return
        monitor = self._selected()
        if monitor is None:
            self.app.notify("No monitor selected", severity="warning")
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._delete(monitor)

        question = f"Delete monitor {monitor.name} ({monitor.kind} {monitor.target}) and its alarms?"
        self.app.push_screen(ConfirmScreen(question), confirmed)

    @work(group="monitor-change", exit_on_error=False)
    async def _delete(self, monitor: Monitor) -> None:
        try:
            await self.app.actions.client.delete_monitor(monitor.id)
        except ClientError as exc:
            self.app.notify(f"Monitor {monitor.name} not deleted: {exc.message}", severity="error")
            return
        self.app.notify(f"Monitor {monitor.name} deleted")
        self._changed(None)

    def _changed(self, outcome: str | None) -> None:
        if outcome:
            self.app.notify(outcome, title="Monitors")
        self.app.actions.poller.wake()
        self.fetcher.now()


# --- the form ---------------------------------------------------------------------------------


def agent_options(agents: Sequence[Agent]) -> list[tuple[str, str]]:
    return [(f"{a.name} · {a.location} · {a.status}", a.id) for a in sorted(agents, key=lambda a: a.name)]


class MonitorForm(ModalScreen[str | None]):
    """Adds a monitor (``monitor`` None) or edits one; dismisses with what was done, None on escape.

    The credential fields are masked, start empty (the server never sends them) and are cleared
    once sent: on edit, left empty they keep what the server holds.
    """

    DEFAULT_CSS = """
    MonitorForm #dialog { width: 78; height: 22; border: round $accent; padding: 0 1; background: $surface; }
    MonitorForm .row { height: 1; }
    MonitorForm .row Label { width: 13; }
    MonitorForm .row Input, MonitorForm .row Select { width: 1fr; }
    MonitorForm #thresholds { height: 4; }
    MonitorForm #form-error { color: $error; height: auto; }
    MonitorForm .hint { color: $text-muted; }
    """
    BINDINGS: ClassVar = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "submit", "Save"),
    ]

    def __init__(self, agents: Sequence[Agent], monitor: Monitor | None = None) -> None:
        super().__init__()
        self.agents = list(agents)
        self.monitor = monitor
        self.busy = False

    def compose(self) -> ComposeResult:
        m = self.monitor
        options = agent_options(self.agents)
        if m is not None and m.agent not in {value for _, value in options}:
            options.append((f"{m.agent_name or m.agent} (not listed)", m.agent))

        def row(label: str, widget: Any) -> Horizontal:
            return Horizontal(Label(label), widget, classes="row")

        title = f"Edit monitor {m.name}" if m else "New monitor"
        creds = "Credentials, masked, sent once, never shown back"
        if m and m.credentials_set:
            creds = f"Credentials set: {', '.join(m.credentials_set)} (left empty: kept; never shown back)"
        with VerticalScroll(id="dialog"):
            yield Label(f"[b]{title}[/b] · ctrl+s saves · escape cancels", classes="title")
            yield row("Name", Input(m.name if m else "", id="name", compact=True))
            agent = Select(options, prompt="pick the agent that reaches the target", id="agent", compact=True)
            if m is not None:
                agent = Select(options, value=m.agent, id="agent", compact=True)
            elif len(options) == 1:
                agent = Select(options, value=options[0][1], id="agent", compact=True)
            yield row("Agent", agent)
            kind = [(k, k) for k in KINDS]
            yield row("Kind", Select(kind, value=m.kind if m else "prometheus", id="kind", compact=True,
                                     allow_blank=False, disabled=m is not None))  # fmt: skip
            placeholder = TARGET_HINTS[m.kind if m else "prometheus"]
            yield row("Target", Input(m.target if m else "", placeholder=placeholder, id="target", compact=True))
            yield row("Interval (s)", Input(f"{m.interval:g}" if m else "10", id="interval", compact=True))
            modes = [("always", "always"), ("tests", "only during the tests that name it")]
            yield row("Runs", Select([(b, a) for a, b in modes], value=m.mode if m else "always", id="mode",
                                     compact=True, allow_blank=False))  # fmt: skip
            yield Label(creds, classes="hint", markup=False)
            yield row("Username", Input("", id="username", compact=True, password=True))
            yield row("Password", Input("", id="password", compact=True, password=True))
            yield row("Key file", Input("", placeholder="path of a private key (ssh)", id="key-file", compact=True))
            yield row("Passphrase", Input("", id="passphrase", compact=True, password=True))
            metrics = ", ".join(m.metrics) if m else ""
            yield row("Metrics", Input(metrics, placeholder="names to keep, comma-separated (empty: defaults)",
                                       id="metrics", compact=True))  # fmt: skip
            yield Label("Thresholds, one a line: node_load1 critical above 4 for 30s", classes="hint")
            lines = "\n".join(threshold_text(t) for t in m.thresholds) if m else ""
            yield TextArea(lines, id="thresholds", compact=True, show_line_numbers=False)
            yield Label("", id="form-error", markup=False)

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()

    @on(Select.Changed, "#kind")
    def _kind_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, str):
            self.query_one("#target", Input).placeholder = TARGET_HINTS.get(event.value, "")

    def _value(self, selector: str) -> str:
        return self.query_one(selector, Input).value.strip()

    def credentials(self) -> tuple[MonitorCredentials | None, str | None]:
        """What the credential fields hold (None: nothing typed), or why they cannot be sent."""
        username = self.query_one("#username", Input).value
        password = self.query_one("#password", Input).value
        passphrase = self.query_one("#passphrase", Input).value
        key_path = self._value("#key-file")
        key: str | None = None
        if key_path:
            path = Path(key_path).expanduser()
            try:
                if path.stat().st_size > 32_768:
                    return None, f"key file {key_path}: larger than 32 KiB, not a private key"
                key = path.read_text()
            except (OSError, UnicodeDecodeError) as exc:
                return None, f"key file {key_path}: {getattr(exc, 'strerror', None) or exc}"
        if not (username or password or passphrase or key):
            return None, None
        try:
            made = MonitorCredentials(
                username=username or None, password=password or None, private_key=key, passphrase=passphrase or None
            )
        except ValidationError as exc:
            return None, "credentials: " + first_error(exc)
        return made, None

    def read(self) -> MonitorCreate | MonitorUpdate | str:
        """The form as the server takes it, or why it cannot be sent."""
        thresholds, problem = parse_thresholds(self.query_one("#thresholds", TextArea).text)
        if problem:
            return problem
        credentials, problem = self.credentials()
        if problem:
            return problem
        interval = _float(self._value("#interval"))
        if interval is None:
            return "interval: a number of seconds, e.g. 10"
        agent = self.query_one("#agent", Select).value
        if not isinstance(agent, str):
            return "agent: pick the agent that reaches the target"
        fields: dict[str, Any] = {
            "name": self._value("#name"),
            "agent": agent,
            "target": self._value("#target"),
            "interval": interval,
            "mode": self.query_one("#mode", Select).value,
            "metrics": split_metrics(self.query_one("#metrics", Input).value),
            "thresholds": thresholds,
        }
        if not fields["name"]:
            return "name: type one, e.g. db-host"
        if not fields["target"]:
            return f"target: e.g. {TARGET_HINTS[str(self.query_one('#kind', Select).value)]}"
        if credentials is not None:
            fields["credentials"] = credentials
        try:
            if self.monitor is None:
                return MonitorCreate(kind=self.query_one("#kind", Select).value, **fields)
            return MonitorUpdate(**fields)
        except ValidationError as exc:
            return first_error(exc)

    def _clear_secrets(self) -> None:
        for selector in ("#username", "#password", "#passphrase", "#key-file"):
            self.query_one(selector, Input).value = ""

    async def action_submit(self) -> None:
        if self.busy:
            return
        error = self.query_one("#form-error", Label)
        spec = self.read()
        if isinstance(spec, str):
            error.update(f"✗ {spec}")
            return
        self.busy = True
        error.update("sending…")
        client = self.app.actions.client if isinstance(self.app, DashboardApp) else None
        try:
            if client is None:
                raise ClientError("no server")
            if isinstance(spec, MonitorCreate):
                made = await client.create_monitor(spec)
                done = f"Monitor {made.name} added"
            else:
                assert self.monitor is not None
                made = await client.update_monitor(self.monitor.id, spec)
                done = f"Monitor {made.name} saved"
        except ClientError as exc:
            error.update(f"✗ {exc.message}")
            return
        finally:
            self.busy = False
            del spec  # the credentials it held go with it
        if made.credentials_set:
            done += f" (credentials kept by the server, never shown: {', '.join(made.credentials_set)})"
        self._clear_secrets()
        self.dismiss(done)

    def action_cancel(self) -> None:
        self._clear_secrets()
        self.dismiss(None)


# --- the main screen's badge ------------------------------------------------------------------

#: How often the badge asks for the raised alarms (every round would double a quiet dashboard's polls).
BADGE_EVERY_S = 2.0


class AlarmBadge(Label):
    """`` 2 ALARMS `` while alarms are raised (critical in the error colour), hidden otherwise.

    Put it in the main screen's status bar: it asks the server at most every ``BADGE_EVERY_S``,
    after a round of the poll worker, never on a timer of its own.
    """

    DEFAULT_CSS = """
    AlarmBadge { margin: 0 1 0 0; background: $warning; color: $background; text-style: bold; display: none; }
    AlarmBadge.-critical { background: $error; }
    """

    def __init__(self) -> None:
        super().__init__("", id="alarm-badge", markup=False)
        self.count = 0
        self._asked = 0.0
        self._busy = False

    def on_mount(self) -> None:
        self.watch(self.app, "connection", self._round, init=False)

    def _round(self, connection: Connection) -> None:
        now = time.monotonic()
        if connection.state != "ok" or self._busy or now - self._asked < BADGE_EVERY_S:
            return
        screen = self.screen
        if isinstance(screen, DashboardScreen) and not screen.feeding:
            return
        self._asked, self._busy = now, True
        self.run_worker(self._ask(), group="alarm-badge", exit_on_error=False)

    async def _ask(self) -> None:
        app = self.app
        try:
            if not isinstance(app, DashboardApp):
                return
            alarms = await app.actions.client.alarms(active=True, limit=1000)
        except ClientError:
            return  # a server without monitors (404), or unreachable: no badge
        finally:
            self._busy = False
        self.show(alarms)

    def show(self, alarms: Sequence[Alarm]) -> None:
        count = len(alarms)
        critical = any(a.severity == "critical" for a in alarms)
        self.count = count
        self.set_class(critical, "-critical")
        self.update(f" {count} ALARM{'S' if count != 1 else ''} " if count else "")
        self.display = count > 0
        self.tooltip = ":monitors shows them" if count else None
