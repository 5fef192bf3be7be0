"""One test: hits/s, response time and error charts over the whole run, and under them one pane at a
time: its containers, its figures per label, its errors, or the selected container's CPU and memory.
Keys to stop it, delete it once ended, run it again as it was, or open the launch dialog filled
with its settings."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import ClassVar

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.markup import escape
from textual.widgets import ContentSwitcher, DataTable, Footer, Input, Label, Static

from octotui.client import ClientError
from octotui.protocol import (
    TERMINAL_CONTAINER_STATES,
    TERMINAL_TEST_STATES,
    Comparison,
    ContainerRecord,
    ErrorFigures,
    GeneratorSeries,
    LabelFigures,
    LabelSeries,
    Test,
    TestSeries,
)
from octotui.tui import format as fmt
from octotui.tui import messages
from octotui.tui.forms import ServerPlan, prefill_fields, rerun_question, server_plan_label
from octotui.tui.rows import (
    comparison_rows,
    container_rows,
    error_rows,
    label_rows,
    test_state,
)
from octotui.tui.screens.base import DashboardScreen
from octotui.tui.screens.baseline import BaselinePicker, baseline_candidates
from octotui.tui.screens.confirm import ConfirmScreen
from octotui.tui.screens.launch import LaunchScreen
from octotui.tui.screens.monitor import TestMonitorsPane
from octotui.tui.state import TestLabels
from octotui.tui.testlines import (
    baseline_line,
    container_line,
    criterion_line,
    criterion_standing,
    elapsed_times,
    errors_line,
    labels_line,
    no_data_text,
    number,
    test_summary,
    verdict_line,
    warning_lines,
)
from octotui.tui.usage import UsageRevision
from octotui.tui.widgets.charts import Chart
from octotui.tui.widgets.keyed_table import KeyedTable
from octotui.tui.widgets.panes import Pane, PaneTabs
from octotui.tui.widgets.tables import ComparisonTable, ContainersTable, ErrorsTable, LabelsTable

#: The panes under the charts, one shown at a time, each with its key.
PANES = (
    Pane("test-containers", "containers", "c"),
    Pane("test-labels", "labels", "l"),
    Pane("test-errors", "errors", "e"),
    Pane("test-usage", "cpu/mem", "m"),
    Pane("test-baseline", "baseline", "b"),
    Pane("test-monitors", "monitors", "M"),
)
#: Keys of this screen that change something, and what a read-only dashboard says of them.
READ_ONLY_KEYS = {"s": "stopping", "x": "stopping", "delete": "deleting tests", "R": "launching", "E": "launching"}


#: The colour of a criterion as it stands, and of the verdict.
STANDING_STYLE = {"passed": "$success", "failed": "$error", "pending": "$text-muted"}


def verdict_markup(test: Test) -> str:
    """The verdict, then each criterion on its line: passed green, failed red with its detail,
    pending dim (markup; the texts escaped)."""
    head = verdict_line(test)
    if not head:
        return ""
    style = STANDING_STYLE["pending" if test.verdict is None else test.verdict]
    lines = [f"[bold {style}]{escape(head)}[/]"]
    for c in test.criteria:
        lines.append(f"[{STANDING_STYLE[criterion_standing(c)]}]{escape(criterion_line(c))}[/]")
    return "\n".join(lines)


class TestScreen(DashboardScreen):
    """The detail of one test; fetched by the app's worker while shown.

    Under the charts one pane at a time (``c``, ``l``, ``e`` or a click on its tab): the containers,
    the figures per label, the errors. One line of tabs instead of a tab bar of two, so that at 80x24
    the pane keeps its rows. The tabs count containers, labels and failed samples, so that errors
    show whichever pane is open.
    """

    __test__ = False
    # The screen's own layout over the app's stylesheet (more specific selectors): at 80x24 every
    # part stays on screen. The head (summary, warnings, verdict and criteria, reason) grows with
    # its text up to 7 lines and scrolls past them: it takes the focus (tab), pgdn/end scroll it.
    CSS = """
    TestScreen #test-head { height: auto; max-height: 7; scrollbar-size-vertical: 1; }
    TestScreen #test-head:focus { background-tint: $foreground 6%; }
    TestScreen #test-title { height: auto; }
    TestScreen #test-reason { max-height: 1000; }
    TestScreen #test-warnings { padding: 0 1; height: auto; color: $warning; text-style: bold; }
    TestScreen #test-verdict { padding: 0 1; height: auto; }
    TestScreen #test-charts { height: 2fr; min-height: 6; }
    TestScreen #test-panes { min-height: 5; }
    """
    BINDINGS: ClassVar = [
        Binding("escape", "back", "Back"),
        Binding("s", "stop_test", "Stop test"),
        Binding("x", "stop_container", "Stop container"),
        Binding("c", "pane('test-containers')", "Containers", show=False),
        Binding("l", "pane('test-labels')", "Labels", show=False),
        Binding("e", "pane('test-errors')", "Errors", show=False),
        Binding("m", "pane('test-usage')", "CPU/mem", show=False),
        # In the panes' tabs ("b baseline"): not again in the footer, which then holds E at 80 columns.
        Binding("b", "baseline", "Baseline", show=False),
        Binding("M", "pane('test-monitors')", "Monitors", key_display="M", show=False),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("R", "rerun", "Re-run", key_display="R"),
        Binding("E", "edit_copy", "Edit copy", key_display="E"),
        Binding("delete", "delete_test", "Delete", key_display="del"),
    ]

    def __init__(self, test_id: str) -> None:
        super().__init__()
        self.test_id = test_id
        self._summary = ""
        self._reason: str | None = None
        self._warnings: list[str] = []
        self._verdict = ""
        self._container_line = ""
        self._labels: list[LabelFigures] | None = None
        self._errors: list[ErrorFigures] | None = None
        #: Whether the server's answer about labels arrived: until then, an empty pane is loading.
        self._answered = False
        #: Whether the test was running when last shown: its keys change when it ends.
        self._live = True
        #: This test against the baseline picked with ``b``, once the server answered.
        self.comparison: Comparison | None = None
        #: The test's whole series as last fetched (the charts' whole-test view).
        self._series: TestSeries | None = None
        #: The generators' CPU and memory over the test (``?generators=true``), fetched while the
        #: cpu/mem pane is shown: None until the server answered (or when it keeps none).
        self.generators: list[GeneratorSeries] | None = None
        #: Labels' series (``?label=NAME``) by label, fetched while the labels pane shows them.
        self.label_series: dict[str, LabelSeries] = {}
        #: When each of those was last asked for (monotonic), to ask at most every few seconds.
        self._asked: dict[str, float] = {}

    def compose(self) -> ComposeResult:
        yield self.status_bar()
        with VerticalScroll(id="test-head"):
            yield Label("loading…", id="test-title", markup=False)
            yield Static("", id="test-warnings", markup=False)
            yield Static("", id="test-verdict")
            yield Static("", id="test-reason", markup=False)
        with Horizontal(id="test-charts"):
            # Per interval ("now", and the window's "peak"), unlike the whole-test header.
            yield Chart("hits/s", formatter=number, latest="now", peak="peak", id="rate-chart")
            yield Chart("avg", formatter=number, unit=" ms", latest="now", peak="peak", id="rt-chart")
            yield Chart("new errors", formatter=number, latest="now", peak="peak", reduce="max", id="err-chart")
        yield PaneTabs(PANES, id="test-tabs")
        with ContentSwitcher(initial="test-containers", id="test-panes"):
            yield ContainersTable(id="test-containers")
            yield LabelsTable(id="test-labels")
            yield ErrorsTable(id="test-errors")
            yield ComparisonTable(id="test-baseline")
            with Horizontal(id="test-usage"):
                yield Chart("CPU", formatter=number, unit=" %", latest="now", peak="peak", id="cpu-usage")
                yield Chart("mem", formatter=fmt.size, latest="now", peak="peak", id="mem-usage")
            yield TestMonitorsPane(self.test_id, id="test-monitors")
        with Horizontal(id="filter-bar"):
            yield Label("filter:", id="filter-label")
            yield Input(placeholder="labels and errors by label, code, message · esc clears", id="filter")
        yield Static("", id="container-line", markup=False)
        # Compact (one space between keys): a running test's keys, E included, fit in 80 columns.
        yield Footer(compact=True)

    def on_mount(self) -> None:
        for part in ("#test-reason", "#test-warnings", "#test-verdict"):
            self.query_one(part).display = False
        self.query_one("#filter-bar").display = False
        self.app.post_message(messages.DetailOpened("test", self.test_id))
        self.watch(self.app, "test_detail", self._detail_changed)
        self.watch(self.app, "test_labels", self._labels_changed)
        self.watch(self.app, "tests", self._tests_changed)
        self.watch(self.app, "container_usage", self._usage_changed)
        self.query_one(ContainersTable).focus()

    def resync(self) -> None:
        self._detail_changed(self.app.test_detail)
        self._labels_changed(self.app.test_labels)
        self._usage_changed(self.app.container_usage)

    def on_unmount(self) -> None:
        self.app.post_message(messages.DetailClosed("test", self.test_id))

    @property
    def ended(self) -> bool:
        """True once the test has ended (it is then deleted and re-run, no longer stopped)."""
        test = self.test
        return test is not None and test.state in TERMINAL_TEST_STATES

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("stop_test", "stop_container", "delete_test", "rerun", "edit_copy") and self.app.read_only:
            return False
        # The footer shows the keys that apply: stop while it runs, re-run and delete once ended.
        if action in ("stop_test", "stop_container") and self.ended:
            return False
        if action in ("rerun", "delete_test", "baseline") and not self.ended:
            return False
        # x stops the container under the cursor: only while the containers are shown.
        return not (action == "stop_container" and self.pane != "test-containers")

    def action_back(self) -> None:
        if self.query_one("#filter-bar").display:
            self.action_clear_filter()
            return
        self.dismiss()

    def on_key(self, event: events.Key) -> None:
        # Keys hidden in read-only mode reach here unhandled: say why they do nothing.
        what = READ_ONLY_KEYS.get(event.key) if self.app.read_only else None
        if what is not None:
            event.stop()
            self.notify(f"read-only: {what} is disabled", severity="warning")
            return
        # Keys hidden while they do not apply: say why.
        test = self.test
        if test is None or self.app.read_only:
            return
        if event.key in ("s", "x") and self.ended:
            event.stop()
            self.notify(f"{test.name} has already {test_state(test)}: nothing to stop", severity="warning")
        elif event.key == "b" and not self.ended:
            event.stop()
            self.notify(f"{test.name} is {test.state}: b compares it with a baseline once it has ended")
        elif event.key in ("R", "delete") and not self.ended:
            event.stop()
            self.notify(
                f"{test.name} is {test.state}: R and del apply once it has ended"
                " (s stops it; E opens the launch dialog filled with it)",
                severity="warning",
            )

    # --- panes and filter ---------------------------------------------------------------------

    @property
    def pane(self) -> str:
        """The id of the pane shown under the charts."""
        return self.query_one("#test-panes", ContentSwitcher).current or "test-containers"

    def action_pane(self, pane: str) -> None:
        """Show ``pane`` (a table's id) under the charts, with the keyboard on it."""
        self.query_one("#test-panes", ContentSwitcher).current = pane
        self.query_one(PaneTabs).activate(pane)
        self.set_class(pane != "test-containers", "-table-pane")
        # The cpu/mem pane has no table: the keyboard stays on the containers, whose cursor picks.
        table = pane if pane != "test-usage" else "test-containers"
        if pane == "test-monitors":  # its charts take the keyboard (n: the next metrics)
            self.set_focus(self.query_one(TestMonitorsPane))
        else:
            self.set_focus(self.query_one(f"#{table}", KeyedTable))
        self._show_line()
        self._usage_changed(self.app.container_usage)
        self._draw_charts()
        self._fetch_more()
        self.refresh_bindings()

    @on(PaneTabs.Chosen)
    def _tab_clicked(self, event: PaneTabs.Chosen) -> None:
        self.action_pane(event.pane)

    @property
    def needle(self) -> str:
        return self.query_one("#filter", Input).value

    def action_filter(self) -> None:
        if self.pane == "test-containers":
            self.action_pane("test-labels")
        self.query_one("#filter-bar").display = True
        # At once, not after the keys already queued: what is typed right after / is the filter's.
        self.set_focus(self.query_one("#filter", Input))

    def action_clear_filter(self) -> None:
        self.query_one("#filter", Input).value = ""
        self.query_one("#filter-bar").display = False
        self.query_one(f"#{self.pane}", KeyedTable).focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self) -> None:
        self._show_labels()

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        if not self.needle:
            self.query_one("#filter-bar").display = False
        self.query_one(f"#{self.pane}", KeyedTable).focus()

    @property
    def test(self) -> Test | None:
        detail = self.app.test_detail
        if detail is not None and detail[0].id == self.test_id:
            return detail[0]
        return next((t for t in self.app.tests if t.id == self.test_id), None)

    def _show(self, test: Test) -> None:
        summary = test_summary(test)
        if summary != self._summary:
            self._summary = summary
            self.query_one("#test-title", Label).update(summary, layout=False)
        if test.reason != self._reason:
            # Rare (a failure, a stop): worth a layout pass, since its height follows the text.
            self._reason = test.reason
            reason = self.query_one("#test-reason", Static)
            reason.update(f"reason: {test.reason}" if test.reason else "")
            reason.display = bool(test.reason)
        warnings = warning_lines(test)
        if warnings != self._warnings:
            self._warnings = warnings
            box = self.query_one("#test-warnings", Static)
            box.update("\n".join(warnings))
            box.display = bool(warnings)
        verdict = verdict_markup(test)
        if verdict != self._verdict:
            self._verdict = verdict
            box = self.query_one("#test-verdict", Static)
            box.update(verdict)
            box.display = bool(verdict)
        table = self.query_one(ContainersTable)
        table.sync(container_rows(test.containers))
        self.query_one(PaneTabs).note("test-containers", str(len(test.containers)))
        self._show_line(test)
        empty = no_data_text(test)
        live = test.state not in TERMINAL_TEST_STATES
        if live != self._live:
            self._live = live
            self.refresh_bindings()
        for chart in self.query("#test-charts Chart").results(Chart):
            if chart.empty != empty:
                chart.empty = empty
            chart.live = live

    def _show_line(self, test: Test | None = None) -> None:
        """The line under the pane: the selected row in full, or why the pane is empty."""
        pane = self.pane
        if pane == "test-labels":
            table: KeyedTable = self.query_one(LabelsTable)
            line = labels_line(self._labels, table.selected_key, table.row_count > 0, self._answered, self.needle)
        elif pane == "test-errors":
            table = self.query_one(ErrorsTable)
            line = errors_line(self._errors, table.selected_key, table.row_count > 0, self._answered, self.needle)
        elif pane == "test-baseline":
            table = self.query_one(ComparisonTable)
            line = baseline_line(self.comparison, table.selected_key, table.row_count > 0)
        else:
            test = test or self.test
            container = self.selected_container(test)
            line = container_line(container)
            if pane == "test-usage" and container is None:
                line = "no container yet: c lists them"
            elif pane == "test-usage":
                if container is not None and self._generator_of(container) is not None:
                    # The charts are its machine's: the container's own figures, now, in words.
                    ended = container.state in TERMINAL_CONTAINER_STATES
                    own = "-" if ended else f"{number(container.cpu_percent)} % CPU, {fmt.size(container.memory_bytes)}"
                    line = f"{line} · container now {own}"
                line = f"{line} · the container under the cursor in c"
        if line != self._container_line:
            self._container_line = line
            self.query_one("#container-line", Static).update(line)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_line()
        if event.data_table.id == "test-containers":
            self._usage_changed(self.app.container_usage)
        elif event.data_table.id == "test-labels" and self.pane == "test-labels":
            self._draw_charts()  # the whole test's until the label's series arrives
            self._fetch_more()

    def selected_container(self, test: Test | None = None) -> ContainerRecord | None:
        """The container under the containers table's cursor (else the first one)."""
        test = test or self.test
        if test is None or not test.containers:
            return None
        key = self.query_one(ContainersTable).selected_key
        return next((c for c in test.containers if c.id == key), test.containers[0])

    def _usage_changed(self, usage: UsageRevision | None) -> None:
        """The selected container's CPU and memory over time, in the cpu/mem pane: its generator's
        (the agent's machine) over the whole test when the server keeps them, else the container's
        own as the heartbeats bring them while the screen is open."""
        if not self.feeding or self.pane != "test-usage":
            return
        test = self.test
        container = self.selected_container(test)
        cpu, mem = self.query_one("#cpu-usage", Chart), self.query_one("#mem-usage", Chart)
        generator = self._generator_of(container)
        if test is not None and container is not None and generator is not None:
            points = generator.points
            times = elapsed_times(test, [g.ts for g in points])
            name = generator.agent_name or container.agent_name or container.agent[:8]
            live = test.state not in TERMINAL_TEST_STATES
            charts = (
                (cpu, f"CPU {name} (machine)", tuple(g.cpu_percent for g in points)),
                (mem, f"mem {name} (machine)", tuple(g.memory_percent for g in points)),
            )
            for chart, title, values in charts:
                self._retitle(chart, title, number, " %", 100.0)
                chart.values, chart.times, chart.live = values, times, live
            return
        samples = usage.usage.of(container.id) if usage and container else ()
        times = elapsed_times(test, [u.ts for u in samples]) if test else ()
        where = f" #{container.index} {container.agent_name or container.agent[:8]}" if container else ""
        live = container is not None and container.state not in TERMINAL_CONTAINER_STATES
        self._retitle(cpu, "CPU" + where, number, " %", None)
        self._retitle(mem, "mem" + where, fmt.size, "", None)
        cpu.values, cpu.times, cpu.live = tuple(u.cpu_percent for u in samples), times, live
        mem.values, mem.times, mem.live = tuple(float(u.memory_bytes) for u in samples), times, live

    @staticmethod
    def _retitle(chart: Chart, title: str, formatter: Callable[[float], str], unit: str, ceiling: float | None) -> None:
        if (chart.title, chart.formatter, chart.unit, chart.ceiling) != (title, formatter, unit, ceiling):
            chart.title, chart.formatter, chart.unit, chart.ceiling = title, formatter, unit, ceiling
            chart.refresh()

    def _generator_of(self, container: ContainerRecord | None) -> GeneratorSeries | None:
        if container is None or not self.generators:
            return None
        return next((g for g in self.generators if g.agent_id == container.agent and g.points), None)

    # --- series the poller does not fetch: the generators', a label's ------------------------

    def _due(self, what: str, every: float) -> bool:
        """True when ``what`` was never asked for, or ``every`` seconds ago while the test runs."""
        asked = self._asked.get(what)
        if asked is not None and (self.ended or time.monotonic() - asked < every):
            return False
        self._asked[what] = time.monotonic()
        return True

    def _fetch_more(self) -> None:
        """Ask for the series the shown pane needs: the generators' in cpu/mem, the label's in labels."""
        if not self.feeding:
            return
        if self.pane == "test-usage" and self._due("generators", 5.0):
            self._fetch_series("generators", {"generators": "true"})
        label = self.selected_label
        if self.pane == "test-labels" and label is not None and self._due(f"label:{label}", 2.0):
            self._fetch_series(f"label:{label}", {"label": label})

    @property
    def selected_label(self) -> str | None:
        table = self.query_one(LabelsTable)
        return table.selected_key if table.row_count else None

    @work(group="series", exit_on_error=False)
    async def _fetch_series(self, what: str, params: dict[str, str]) -> None:
        try:
            label, generators = params.get("label"), "generators" in params
            series = await self.app.actions.test_series(self.test_id, label=label, generators=generators)
        except (ClientError, OSError):
            self._asked.pop(what, None)  # asked again at the next update
            return
        if what == "generators":
            self.generators = series.generators
            self._usage_changed(self.app.container_usage)
        else:
            for got in series.labels:
                self.label_series[got.label] = got
            self._draw_charts()

    def on_keyed_table_sort_changed(self, event: KeyedTable.SortChanged) -> None:
        # The cursor keeps its place, not its row: another row is under it now.
        self._show_line()

    def _labels_changed(self, figures: TestLabels | None) -> None:
        if figures is None or figures.test_id != self.test_id or not self.feeding:
            return
        self._labels, self._errors, self._answered = figures.labels, figures.errors, True
        self._show_labels()

    def _show_labels(self) -> None:
        labels, errors, needle = self._labels, self._errors, self.needle
        self.query_one(LabelsTable).sync(*label_rows(labels or (), needle))
        self.query_one(ErrorsTable).sync(*error_rows(errors or (), needle))
        tabs = self.query_one(PaneTabs)
        tabs.note("test-labels", "" if labels is None else str(len(labels)))
        failed = sum(e.count for e in errors or ())
        tabs.note("test-errors", "" if errors is None else fmt.count(failed), alert=failed > 0)
        self._show_line()

    def _tests_changed(self, tests: list[Test]) -> None:
        detail = self.app.test_detail
        if self.feeding and (detail is None or detail[0].id != self.test_id):
            test = self.test
            if test is not None:
                self._show(test)

    def _detail_changed(self, detail: tuple[Test, TestSeries] | None) -> None:
        if detail is None or detail[0].id != self.test_id or not self.feeding:
            return
        test, series = detail
        self._show(test)
        self._series = series
        self._draw_charts()
        # A container that ended adds no sample, but its "now" goes blank.
        self._usage_changed(self.app.container_usage)
        self._fetch_more()

    def _draw_charts(self) -> None:
        """The whole test's series in the charts, or the selected label's while the labels pane is
        shown and the server has it (the charts' titles then name the label)."""
        test, series = self.test, self._series
        if test is None or series is None:
            return
        rate = self.query_one("#rate-chart", Chart)
        rt = self.query_one("#rt-chart", Chart)
        err = self.query_one("#err-chart", Chart)
        selected = self.selected_label
        label = self.label_series.get(selected) if selected is not None else None
        if self.pane == "test-labels" and label is not None:
            lp = label.points
            times = elapsed_times(test, [p.ts for p in lp])
            name = label.label if len(label.label) <= 24 else label.label[:23] + "…"
            for chart, title, values in (
                (rate, f"hits/s {name}", tuple(p.rate for p in lp)),
                (rt, f"avg {name}", tuple(p.avg_ms for p in lp)),
                (err, f"errors/s {name}", tuple(p.error_rate for p in lp)),
            ):
                if chart.title != title:
                    chart.title = title
                    chart.refresh()
                chart.values, chart.times = values, times
            return
        points = series.points
        # The whole run, on an elapsed-time axis: the charts fold it into their width.
        times = elapsed_times(test, [p.ts for p in points])
        # The series carries cumulative errors; the chart shows how many each point added.
        errors = [p.errors for p in points]
        added = [max(0, now - before) for before, now in itertools.pairwise(errors)]
        for chart, title, values in (
            (rate, "hits/s", tuple(p.rate for p in points)),
            (rt, "avg", tuple(p.avg_ms for p in points)),
            (err, "new errors", tuple(float(n) for n in [0, *added][: len(errors)])),
        ):
            if chart.title != title:
                chart.title = title
                chart.refresh()
            chart.values, chart.times = values, times

    def action_stop_test(self) -> None:
        test = self.test
        if test is None or test.state in TERMINAL_TEST_STATES:
            self.notify("This test is not running", severity="warning")
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.app.actions.stop_test(test.id, test.name)

        self.app.push_screen(ConfirmScreen(f"Stop test {test.name}?"), confirmed)

    def action_stop_container(self) -> None:
        test = self.test
        key = self.query_one(ContainersTable).selected_key
        container = next((c for c in test.containers if c.id == key), None) if test else None
        if test is None or container is None:
            self.notify("Select a container first", severity="warning")
            return
        if container.state in TERMINAL_CONTAINER_STATES:
            self.notify(f"That container has already {container.state}", severity="warning")
            return
        label = f"container {container.index} on {container.agent_name or container.agent}"

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.app.actions.stop_container(test.id, container.id, label)

        self.app.push_screen(ConfirmScreen(f"Stop {label} of {test.name}?"), confirmed)

    # --- an ended test: compare it, delete it, run it again ---------------------------------------

    def action_baseline(self) -> None:
        """Pick an earlier ended test; the baseline pane then shows this one against it."""
        test = self.test
        if test is None or test.state not in TERMINAL_TEST_STATES:
            return
        candidates = baseline_candidates(test, self.app.tests)
        if not candidates:
            self.notify(f"no earlier ended test to compare {test.name} with", severity="warning")
            return

        def chosen(baseline_id: str | None) -> None:
            if baseline_id:
                self._compare(test, baseline_id)

        self.app.push_screen(BaselinePicker(test, candidates), chosen)

    @work(group="compare", exclusive=True, exit_on_error=False)
    async def _compare(self, test: Test, baseline_id: str) -> None:
        try:
            comparison = await self.app.actions.compare(test.id, baseline_id)
        except ClientError as exc:
            self.notify(exc.message, title=f"Cannot compare {test.name}", severity="error")
            return
        self.show_comparison(comparison)

    def show_comparison(self, comparison: Comparison) -> None:
        """The baseline pane, shown: each label against the baseline, its tab counting regressions."""
        self.comparison = comparison
        self.query_one(ComparisonTable).sync(*comparison_rows(comparison))
        n = comparison.regressions
        self.query_one(PaneTabs).note("test-baseline", str(n), alert=n > 0)
        self.action_pane("test-baseline")

    def action_delete_test(self) -> None:
        test = self.test
        if test is None:
            return
        if test.state not in TERMINAL_TEST_STATES:
            self.notify(f"{test.name} is {test.state}: stop it first (s), then delete it", severity="warning")
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.app.actions.delete_test(test.id, test.name)
                self.dismiss()

        question = f"Delete test {test.name} ({test_state(test)}) with its results, timeline and files?"
        question += " It cannot be undone."
        self.app.push_screen(ConfirmScreen(question), confirmed)

    def action_rerun(self) -> None:
        test = self.test
        if test is None:
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.app.actions.rerun_test(test)

        self.app.push_screen(ConfirmScreen(rerun_question(test)), confirmed)

    def action_edit_copy(self) -> None:
        test = self.test
        if test is not None:
            self.notify(f"reading the plan of {test.name} from the server…")
            self._open_copy(test)

    @work(group="plan", exclusive=True, exit_on_error=False)
    async def _open_copy(self, test: Test) -> None:
        """The launch dialog filled with ``test``'s settings and its plan as the server keeps it."""
        try:
            plan = await self.app.actions.test_plan(test.id)
        except ClientError as exc:
            self.notify(exc.message, title=f"Cannot read the plan of {test.name}", severity="error")
            return
        fields, provider = prefill_fields(test)
        server_plan = ServerPlan(server_plan_label(test.name), plan, test.name, tuple(test.files))
        self.app.push_screen(LaunchScreen(fields=fields, provider=provider, server_plan=server_plan))
