"""One test: hits/s, response time and error charts over the whole run, and under them one pane at a
time: its containers, its figures per label, its errors, or the selected container's CPU and memory.
Keys to stop it, delete it once ended, run it again as it was, or open the launch dialog filled
with its settings."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import ContentSwitcher, Footer, Input, Label, Static

from octotui.tui import format as fmt
from octotui.tui import messages
from octotui.tui.screens.monitor import TestMonitorsPane
from octotui.tui.screens.testkeys import READ_ONLY_KEYS, TestKeys
from octotui.tui.screens.testpanes import PANES, verdict_markup
from octotui.tui.testlines import number
from octotui.tui.widgets.charts import Chart
from octotui.tui.widgets.panes import PaneTabs
from octotui.tui.widgets.tables import ComparisonTable, ContainersTable, ErrorsTable, LabelsTable

__all__ = ["PANES", "READ_ONLY_KEYS", "TestScreen", "verdict_markup"]


class TestScreen(TestKeys):
    """The detail of one test; fetched by the app's worker while shown.

    Under the charts one pane at a time (``c``, ``l``, ``e`` or a click on its tab): the containers,
    the figures per label, the errors. One line of tabs instead of a tab bar of two, so that at 80x24
    the pane keeps its rows. The tabs count containers, labels and failed samples, so that errors
    show whichever pane is open.
    """

    # What it shows is :mod:`~octotui.tui.screens.testpanes`', where its figures come from
    # :mod:`~octotui.tui.screens.testdata`'s, its keys :mod:`~octotui.tui.screens.testkeys`'.
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

    def on_unmount(self) -> None:
        self.app.post_message(messages.DetailClosed("test", self.test_id))
