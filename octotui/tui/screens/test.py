"""One test: live hits/s, response time and error charts, and its containers."""

from __future__ import annotations

import itertools
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Footer, Label

from octotui.protocol import TERMINAL_CONTAINER_STATES, TERMINAL_TEST_STATES, Test, TestSeries
from octotui.tui.screens.base import DashboardScreen
from octotui.tui.widgets.charts import Chart
from octotui.tui.widgets.tables import ContainersTable, live_containers


def _number(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def test_summary(test: Test) -> str:
    """Two lines: identity and state, then results."""
    r = test.results
    first = f"{test.name} · {test.state} · {test.provider_name or test.provider}"
    if test.locations:
        first += f"/{','.join(test.locations)}"
    first += f" · {live_containers(test)}/{len(test.containers)} containers · {test.image}"
    second = (
        f"{r.samples} samples · {r.throughput:.1f}/s · avg {r.avg_ms:.0f} ms · "
        f"errors {r.errors} ({r.error_percent:.2f}%) · {r.active} users"
    )
    if r.final and r.p95_ms is not None:
        second += f" · p95 {r.p95_ms:.0f} ms"
    if test.reason:
        second += f" · {test.reason}"
    return first + "\n" + second


class TestScreen(DashboardScreen):
    """The detail of one test; fetched by the app's worker while shown."""

    __test__ = False
    BINDINGS: ClassVar = [
        Binding("escape", "back", "Back"),
        Binding("s", "stop_test", "Stop test"),
        Binding("x", "stop_container", "Stop container"),
    ]

    def __init__(self, test_id: str) -> None:
        super().__init__()
        self.test_id = test_id
        self._summary = ""

    def compose(self) -> ComposeResult:
        yield self.status_bar()
        yield Label("loading…", id="test-title", markup=False)
        with Horizontal(id="test-charts"):
            yield Chart("hits/s", formatter=_number, id="rate-chart")
            yield Chart("avg", formatter=_number, unit=" ms", id="rt-chart")
            yield Chart("new errors", formatter=_number, id="err-chart")
        yield ContainersTable(id="test-containers")
        yield Footer()

    def on_mount(self) -> None:
        self.octo.follow_test(self.test_id)
        self.watch(self.app, "test_detail", self._detail_changed)
        self.watch(self.app, "tests", self._tests_changed)
        self.query_one(ContainersTable).focus()

    def resync(self) -> None:
        self._detail_changed(self.octo.test_detail)

    def on_unmount(self) -> None:
        if self.octo.poller.test_id == self.test_id:
            self.octo.follow_test(None)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action in ("stop_test", "stop_container") and self.octo.read_only)

    def action_back(self) -> None:
        self.dismiss()

    @property
    def test(self) -> Test | None:
        detail = self.octo.test_detail
        if detail is not None and detail[0].id == self.test_id:
            return detail[0]
        return next((t for t in self.octo.tests if t.id == self.test_id), None)

    def _show(self, test: Test) -> None:
        summary = test_summary(test)
        if summary != self._summary:
            self._summary = summary
            self.query_one("#test-title", Label).update(summary, layout=False)
        self.query_one(ContainersTable).show(test.containers)

    def _tests_changed(self, tests: list[Test]) -> None:
        if self.feeding and self.octo.test_detail is None:
            test = self.test
            if test is not None:
                self._show(test)

    def _detail_changed(self, detail: tuple[Test, TestSeries] | None) -> None:
        if detail is None or detail[0].id != self.test_id or not self.feeding:
            return
        test, series = detail
        self._show(test)
        points = series.points
        self.query_one("#rate-chart", Chart).values = tuple(p.rate for p in points)
        self.query_one("#rt-chart", Chart).values = tuple(p.avg_ms for p in points)
        # The series carries cumulative errors; the chart shows how many each point added.
        errors = [p.errors for p in points]
        added = [max(0, now - before) for before, now in itertools.pairwise(errors)]
        self.query_one("#err-chart", Chart).values = tuple(float(n) for n in [0, *added][: len(errors)])

    def action_stop_test(self) -> None:
        from octotui.tui.screens.confirm import ConfirmScreen

        test = self.test
        if test is None or test.state in TERMINAL_TEST_STATES:
            self.notify("This test is not running", severity="warning")
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.octo.stop_test(test.id, test.name)

        self.app.push_screen(ConfirmScreen(f"Stop test {test.name}?"), confirmed)

    def action_stop_container(self) -> None:
        from octotui.tui.screens.confirm import ConfirmScreen

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
                self.octo.stop_container(test.id, container.id, label)

        self.app.push_screen(ConfirmScreen(f"Stop {label} of {test.name}?"), confirmed)
