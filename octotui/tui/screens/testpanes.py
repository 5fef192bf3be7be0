"""What the test screen shows, and how: the head (summary, warnings, verdict, reason), the charts
(the whole test's series, or a label's, or a container's and its machine's CPU and memory), the panes
under them one at a time (containers, labels, errors, baseline, cpu/mem, monitors), the filter, and
the line under the pane. Drawn from what the data layer (:mod:`~octotui.tui.screens.testdata`) hands
it; the keys are :mod:`~octotui.tui.screens.testkeys`'."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from textual import on
from textual.markup import escape
from textual.widgets import ContentSwitcher, DataTable, Input, Label, Static

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
from octotui.tui.rows import comparison_rows, container_rows, error_rows, label_rows
from octotui.tui.screens.base import DashboardScreen
from octotui.tui.screens.monitor import TestMonitorsPane
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


class TestPanes(DashboardScreen):
    """The test screen's panes and drawing (see :class:`~octotui.tui.screens.test.TestScreen`)."""

    __test__ = False

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

    @property
    def ended(self) -> bool:
        """True once the test has ended (it is then deleted and re-run, no longer stopped)."""
        test = self.test
        return test is not None and test.state in TERMINAL_TEST_STATES

    @property
    def test(self) -> Test | None:
        detail = self.app.test_detail
        if detail is not None and detail[0].id == self.test_id:
            return detail[0]
        return next((t for t in self.app.tests if t.id == self.test_id), None)

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

    def _fetch_more(self) -> None:
        """Ask for the series the shown pane needs that the poller does not fetch (the data layer's,
        :meth:`~octotui.tui.screens.testdata.TestData._fetch_more`)."""

    # --- what is shown ------------------------------------------------------------------------

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

    def on_keyed_table_sort_changed(self, event: KeyedTable.SortChanged) -> None:
        # The cursor keeps its place, not its row: another row is under it now.
        self._show_line()

    def selected_container(self, test: Test | None = None) -> ContainerRecord | None:
        """The container under the containers table's cursor (else the first one)."""
        test = test or self.test
        if test is None or not test.containers:
            return None
        key = self.query_one(ContainersTable).selected_key
        return next((c for c in test.containers if c.id == key), test.containers[0])

    @property
    def selected_label(self) -> str | None:
        table = self.query_one(LabelsTable)
        return table.selected_key if table.row_count else None

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

    def _show_labels(self) -> None:
        labels, errors, needle = self._labels, self._errors, self.needle
        self.query_one(LabelsTable).sync(*label_rows(labels or (), needle))
        self.query_one(ErrorsTable).sync(*error_rows(errors or (), needle))
        tabs = self.query_one(PaneTabs)
        tabs.note("test-labels", "" if labels is None else str(len(labels)))
        failed = sum(e.count for e in errors or ())
        tabs.note("test-errors", "" if errors is None else fmt.count(failed), alert=failed > 0)
        self._show_line()

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

    def show_comparison(self, comparison: Comparison) -> None:
        """The baseline pane, shown: each label against the baseline, its tab counting regressions."""
        self.comparison = comparison
        self.query_one(ComparisonTable).sync(*comparison_rows(comparison))
        n = comparison.regressions
        self.query_one(PaneTabs).note("test-baseline", str(n), alert=n > 0)
        self.action_pane("test-baseline")
