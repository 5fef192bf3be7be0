"""One monitor: charts of two of its metrics over the server's live window, with its alarms marked
under them, its thresholds, its state and last error, and its latest alarms.

Fetched once per round of the app's poll worker while on top (see ``RoundFetcher``): the whole
window once, then only the last seconds merged in, as the agent screen's charts are.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Label, Static

from octotui.client import ClientError, ServerUnreachable
from octotui.protocol import TERMINAL_TEST_STATES, Alarm, Monitor, MonitorSample, Test
from octotui.protocol.monitors import TestMonitors  # not re-exported by the package
from octotui.tui.dashboard import DashboardApp
from octotui.tui.monitorlines import (
    READ_ONLY,
    alarm_line,
    alarm_marks,
    fetch_period,
    number,
    on_times,
    pane_head,
    shown_metrics,
    state_words,
    threshold_text,
)
from octotui.tui.screens.base import DashboardScreen
from octotui.tui.screens.monitorform import MonitorForm
from octotui.tui.screens.monitors import RoundFetcher
from octotui.tui.widgets.charts import Chart, columns

#: How far back the charts reach.
WINDOW_S = 600.0
ALARMS_SHOWN = 20


class MarkedChart(Chart):
    """A chart over time with a line under it marking the alarms of its metric."""

    def __init__(self, title: str, *, id: str | None = None) -> None:
        super().__init__(title, formatter=number, peak="max", id=id)
        self.metric = ""
        self.alarms: Sequence[Alarm] = ()
        self.origin = 0.0

    def draw(self, width_cells: int, height: int) -> Text:
        text = super().draw(width_cells, max(1, height - 1))
        if not self.values or height < 3:
            return text
        lines = text.plain.split("\n")
        gutter = next((line.index("┤") + 1 for line in lines[1:] if "┤" in line), 0)
        _, at = columns(self.values, self.times, max(1, width_cells - gutter), self.reduce)
        marks = alarm_marks(self.alarms, self.metric, at, self.origin, time.time())
        if marks.strip():
            severity = (
                "critical" if any(a.severity == "critical" for a in self.alarms if a.metric == self.metric) else ""
            )
            style = self.app.theme_variables.get("error" if severity else "warning", "red")
            text.append("\n" + " " * gutter)
            text.append(marks, style)
        return text


class MonitorScreen(DashboardScreen):
    """The detail of one monitor; ``m`` shows the next metrics, ``e`` edits it (admins)."""

    DEFAULT_CSS = """
    MonitorScreen #monitor-title { padding: 0 1; height: 1; text-style: bold; }
    MonitorScreen #monitor-state { padding: 0 1; height: auto; max-height: 2; }
    MonitorScreen #monitor-state.-error { color: $error; }
    MonitorScreen #monitor-thresholds { padding: 0 1; height: auto; max-height: 3; color: $text-muted; }
    MonitorScreen #monitor-charts { height: 1fr; min-height: 6; }
    MonitorScreen #monitor-charts MarkedChart { width: 1fr; padding: 0 1; }
    MonitorScreen #monitor-alarms { padding: 0 1; height: auto; max-height: 4; color: $text-muted; }
    """
    BINDINGS: ClassVar = [
        Binding("escape", "back", "Back"),
        Binding("m", "next_metrics", "Metrics"),
        Binding("e", "edit", "Edit"),
    ]

    def __init__(self, monitor_id: str) -> None:
        super().__init__()
        self.monitor_id = monitor_id
        self.monitor: Monitor | None = None
        self.alarms: list[Alarm] = []
        self.samples: deque[MonitorSample] = deque(maxlen=4000)
        self.first_metric = 0
        self.gone = False
        self.fetcher = RoundFetcher(self)

    def compose(self) -> ComposeResult:
        yield self.status_bar()
        yield Label("loading…", id="monitor-title", markup=False)
        yield Static("", id="monitor-state", markup=False)
        yield Static("", id="monitor-thresholds", markup=False)
        with Horizontal(id="monitor-charts"):
            yield MarkedChart("", id="chart-a")
            yield MarkedChart("", id="chart-b")
        yield Static("", id="monitor-alarms", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.fetcher.start()
        self.fetcher.now()

    def resync(self) -> None:
        self.fetcher.now()

    def action_back(self) -> None:
        self.dismiss()

    async def fetch(self) -> None:
        actions = self.app.actions
        whole = not self.samples
        try:
            monitor = await actions.monitor(self.monitor_id)
            seconds = WINDOW_S if whole else max(10.0, monitor.interval * 3)
            metrics = await actions.monitor_metrics(self.monitor_id, seconds=seconds)
            alarms = await actions.alarms(monitor=self.monitor_id, limit=ALARMS_SHOWN)
        except ServerUnreachable:
            return
        except ClientError as exc:
            if exc.status == 404:
                self.gone = True
                self.query_one("#monitor-title", Label).update("This monitor was deleted.")
            return
        last = self.samples[-1].ts if self.samples else float("-inf")
        self.samples.extend(s for s in metrics.samples if s.ts > last)
        horizon = (self.samples[-1].ts if self.samples else 0.0) - WINDOW_S
        while self.samples and self.samples[0].ts < horizon:
            self.samples.popleft()
        self.show(monitor, alarms)

    def metric_names(self) -> list[str]:
        """The metrics the charts can show: thresholds' and chosen ones first, then the rest."""
        m = self.monitor
        if m is None:
            return []
        seen = set(m.last_values)
        for s in self.samples:
            seen.update(s.values)
        order = [t.metric for t in m.thresholds] + list(m.metrics) + shown_metrics(m) + sorted(seen)
        return [name for name in dict.fromkeys(order) if name in seen]

    def show(self, monitor: Monitor, alarms: list[Alarm]) -> None:
        self.fetcher.period = fetch_period([monitor.interval])
        self.monitor, self.alarms = monitor, alarms
        self.query_one("#monitor-title", Label).update(
            f"{monitor.name} · {monitor.kind} {monitor.target} · every {monitor.interval:g}s ({monitor.mode})"
            f" · on {monitor.agent_name or monitor.agent}"
        )
        state = self.query_one("#monitor-state", Static)
        words = state_words(monitor)
        if monitor.last_ts:
            words += f" · last report {time.strftime('%H:%M:%S', time.localtime(monitor.last_ts))}"
        if monitor.credentials_set:
            words += f" · credentials: {', '.join(monitor.credentials_set)}"
        state.update(words)
        state.set_class(monitor.state == "error", "-error")
        lines = [threshold_text(t) for t in monitor.thresholds]
        self.query_one("#monitor-thresholds", Static).update(
            "thresholds: " + "; ".join(lines) if lines else "thresholds: none (e edits)"
        )
        raised = [a for a in alarms if a.ended_at is None]
        shown = (raised or alarms)[:3]
        text = "\n".join(alarm_line(a) for a in shown) if shown else "no alarm"
        self.query_one("#monitor-alarms", Static).update(text)
        self._draw()

    def _draw(self) -> None:
        names = self.metric_names()
        origin = self.samples[0].ts if self.samples else 0.0
        for index, chart in enumerate(self.query(MarkedChart)):
            chart.display = index == 0 or index < len(names)  # one metric: one chart, the whole width
            if not names or index >= len(names):
                chart.title = "" if names else "no metric reported yet"
                chart.metric = ""
                chart.values, chart.times = (), ()
                chart.refresh()
                continue
            name = names[(self.first_metric + index) % len(names)]
            points = [(s.ts - origin, s.values[name]) for s in self.samples if name in s.values]
            chart.title = name if len(name) <= 30 else name[:29] + "…"
            chart.metric = name
            chart.alarms = self.alarms
            chart.origin = origin
            chart.live = self.monitor is not None and self.monitor.state == "ok"
            chart.times = tuple(t for t, _ in points)
            chart.values = tuple(v for _, v in points)
            chart.refresh()

    def action_next_metrics(self) -> None:
        names = self.metric_names()
        if len(names) > 2:
            self.first_metric = (self.first_metric + 2) % len(names)
        elif names:
            self.first_metric = (self.first_metric + 1) % len(names)
        self._draw()

    def action_edit(self) -> None:
        if self.app.read_only:
            self.app.notify(READ_ONLY, severity="warning")
            return
        if self.monitor is None or self.gone:
            return
        self.app.push_screen(MonitorForm(self.app.agents, self.monitor), self._edited)

    def _edited(self, outcome: str | None) -> None:
        if outcome:
            self.app.notify(outcome, title="Monitors")
        self.fetcher.now()


# --- the test screen's monitors pane ----------------------------------------------------------

#: How often a running test's monitor series are asked for again (an ended test's: once).
TEST_MONITORS_EVERY_S = 2.0


class TestMonitorsPane(Vertical):
    """The test's monitor metrics on the response times' time axis: each chart reads its metric at
    the times of the test's series, so its columns fall under the hits/s and avg charts' columns;
    the test's alarms marked under them. Fetched only while shown; ``n`` shows the next metrics."""

    __test__ = False
    can_focus = True
    DEFAULT_CSS = """
    TestMonitorsPane #tm-line { padding: 0 1; height: auto; max-height: 2; color: $text-muted; }
    TestMonitorsPane #tm-charts { height: 1fr; }
    TestMonitorsPane MarkedChart { width: 1fr; padding: 0 1; }
    TestMonitorsPane:focus { background-tint: $foreground 6%; }
    """
    BINDINGS: ClassVar = [Binding("n", "next_metrics", "Metrics")]

    def __init__(self, test_id: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.test_id = test_id
        self.data: TestMonitors | None = None
        self.first = 0
        self._asked = 0.0
        self._busy = False
        self._line = ""

    def compose(self) -> ComposeResult:
        yield Static("monitors: loading…", id="tm-line", markup=False)
        with Horizontal(id="tm-charts"):
            yield MarkedChart("", id="tm-a")
            yield MarkedChart("", id="tm-b")

    def on_mount(self) -> None:
        app = self.app
        if isinstance(app, DashboardApp):
            self.watch(app, "test_detail", self._detail_changed, init=False)

    def on_show(self) -> None:
        self._asked = 0.0
        self._detail_changed(None)

    def _detail_changed(self, _detail: object) -> None:
        if not self.display or not self.is_mounted:
            return
        test = self._test()
        ended = test is not None and test.state in TERMINAL_TEST_STATES
        due = self._asked == 0.0 or (not ended and time.monotonic() - self._asked >= TEST_MONITORS_EVERY_S)
        if due and not self._busy:
            self._asked, self._busy = time.monotonic(), True
            self.run_worker(self._fetch(), group="test-monitors", exit_on_error=False)
        else:
            self.draw()

    def _test(self) -> Test | None:
        app = self.app
        if not isinstance(app, DashboardApp):
            return None
        detail = app.test_detail
        if detail is not None and detail[0].id == self.test_id:
            return detail[0]
        return next((t for t in app.tests if t.id == self.test_id), None)

    async def _fetch(self) -> None:
        app = self.app
        try:
            if isinstance(app, DashboardApp):
                self.data = await app.actions.test_monitors(self.test_id)
        except ClientError as exc:
            self._asked = 0.0 if exc.status != 404 else self._asked
            self._say("monitors: none kept (the server has no monitors)" if exc.status == 404 else "")
            return
        finally:
            self._busy = False
        self.draw()

    def _say(self, line: str) -> None:
        if line and line != self._line:
            self._line = line
            self.query_one("#tm-line", Static).update(line)

    def draw(self) -> None:
        data = self.data
        if data is None:
            return
        self._say(pane_head(data))
        series = [s for s in data.series if s.points]
        alarmed = {(a.monitor, a.metric) for a in data.alarms}
        series.sort(key=lambda s: ((s.monitor, s.metric) not in alarmed, s.monitor_name, s.metric))
        app, test = self.app, self._test()
        detail = app.test_detail if isinstance(app, DashboardApp) else None
        stamps = [p.ts for p in detail[1].points] if detail is not None and detail[0].id == self.test_id else []
        live = test is not None and test.state not in TERMINAL_TEST_STATES
        for index, chart in enumerate(self.query(MarkedChart)):
            chart.display = index == 0 or index < len(series)  # one series: one chart, the whole width
            if not series or index >= len(series):
                chart.title = "" if series else "no monitor series yet"
                chart.metric, chart.values, chart.times = "", (), ()
                chart.refresh()
                continue
            s = series[(self.first + index) % len(series)]
            own = [t for t, _ in s.points]
            at = stamps or own
            origin = (test.started_at.timestamp() if test and test.started_at else at[0]) if at else 0.0
            origin = min(origin, at[0]) if at else origin
            name = f"{s.monitor_name or s.monitor[:8]} {s.metric}"
            chart.title = name if len(name) <= 34 else name[:33] + "…"
            chart.metric = s.metric
            chart.alarms = [a for a in data.alarms if a.monitor == s.monitor]
            chart.origin = origin
            chart.live = live
            chart.times = tuple(t - origin for t in at)
            chart.values = on_times(s.points, at) if stamps else tuple(v for _, v in s.points)
            chart.refresh()

    def action_next_metrics(self) -> None:
        count = len([s for s in self.data.series if s.points]) if self.data else 0
        if count:
            self.first = (self.first + (2 if count > 2 else 1)) % count
        self.draw()
