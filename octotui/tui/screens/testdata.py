"""Where the test screen's figures come from: the app's values the poll worker keeps (the test and
its series, its labels and errors, the tests list, the containers' usage), and the series the poller
does not fetch, asked for while the pane that shows them is open (the generators' CPU and memory, a
label's timeline)."""

from __future__ import annotations

import time

from textual import work

from octotui.client import ClientError
from octotui.protocol import Test, TestSeries
from octotui.tui.screens.testpanes import TestPanes
from octotui.tui.state import TestLabels


class TestData(TestPanes):
    """The test screen's data loading (see :class:`~octotui.tui.screens.test.TestScreen`)."""

    def __init__(self, test_id: str) -> None:
        super().__init__(test_id)
        #: When each series the poller does not fetch was last asked for (monotonic), to ask at
        #: most every few seconds.
        self._asked: dict[str, float] = {}

    def resync(self) -> None:
        self._detail_changed(self.app.test_detail)
        self._labels_changed(self.app.test_labels)
        self._usage_changed(self.app.container_usage)

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

    def _labels_changed(self, figures: TestLabels | None) -> None:
        if figures is None or figures.test_id != self.test_id or not self.feeding:
            return
        self._labels, self._errors, self._answered = figures.labels, figures.errors, True
        self._show_labels()

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
