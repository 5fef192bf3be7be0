"""Monitors of the servers under test: the list (state in words, last values, raised alarms), the
alarms table (raised first, then recent), and the badge the main screen shows while alarms are
raised. The words are :mod:`octotui.tui.monitorlines`', the form :mod:`~octotui.tui.screens.monitorform`'s.

Nothing here polls on its own timer: a screen fetches after a round of the app's poll worker (it
watches the app's ``connection``, set after every round), only while it is shown, at most as often
as its monitors collect, never two fetches at once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Label, Static

from octotui.client import ClientError, ServerUnreachable
from octotui.protocol import Alarm, Monitor
from octotui.tui.dashboard import DashboardApp
from octotui.tui.monitorlines import (
    ALARMS_SHOWN,
    FETCH_MIN_S,
    READ_ONLY,
    alarm_line,
    alarm_rows,
    fetch_period,
    missing_raised,
    monitor_line,
    monitor_rows,
    with_raised,
)
from octotui.tui.screens.base import DashboardScreen
from octotui.tui.screens.confirm import ConfirmScreen
from octotui.tui.screens.monitorform import MonitorForm
from octotui.tui.state import Connection
from octotui.tui.widgets.keyed_table import Column, KeyedTable

# --- tables -----------------------------------------------------------------------------------


class MonitorsTable(KeyedTable):
    """Monitors, columns as wide as their text: at 80 columns a long target or error gives way
    (the line under the table holds it whole), the last values keep theirs."""

    FIT_COLUMNS = True
    COLUMNS = (
        Column("name", "Name", 6, max_width=16),
        Column("agent", "Agent", 5, max_width=10),
        Column("kind", "Kind", 4, max_width=10),
        Column("target", "Target", 8, max_width=28),
        Column("state", "State", 8, max_width=32),
        Column("alarms", "!", 1, "right", max_width=3),
        Column("values", "Last values", 11, stretch=True),
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


# --- fetching once per poll round ---------------------------------------------------------------


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
    MonitorsScreen #monitors { height: auto; max-height: 50%; min-height: 3; }
    MonitorsScreen #monitor-line { padding: 0 1; height: 3; color: $text-muted; }
    MonitorsScreen #alarms { height: 1fr; min-height: 4; }
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
        actions = self.app.actions
        try:
            monitors = await actions.monitors()
            alarms = await actions.alarms(limit=ALARMS_SHOWN)
            if missing_raised(alarms, monitors):
                alarms = with_raised(await actions.alarms(active=True), alarms)
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
            await self.app.actions.delete_monitor(monitor.id)
        except ClientError as exc:
            self.app.notify(f"Monitor {monitor.name} not deleted: {exc.message}", severity="error")
            return
        self.app.notify(f"Monitor {monitor.name} deleted")
        self._changed(None)

    def _changed(self, outcome: str | None) -> None:
        if outcome:
            self.app.notify(outcome, title="Monitors")
        self.fetcher.now()


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
            alarms = await app.actions.alarms(active=True)
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
