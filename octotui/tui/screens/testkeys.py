"""The test screen's keys: which apply (read-only, running or ended), why one that does not does
nothing, and what each asks: stop the test or a container, compare with a baseline, delete, re-run,
open the launch dialog filled with the test's settings."""

from __future__ import annotations

from textual import events, work

from octotui.client import ClientError
from octotui.protocol import TERMINAL_CONTAINER_STATES, TERMINAL_TEST_STATES, Test
from octotui.tui.forms import ServerPlan, prefill_fields, rerun_question, server_plan_label
from octotui.tui.rows import test_state
from octotui.tui.screens.baseline import BaselinePicker, baseline_candidates
from octotui.tui.screens.confirm import ConfirmScreen
from octotui.tui.screens.launch import LaunchScreen
from octotui.tui.screens.testdata import TestData
from octotui.tui.widgets.tables import ContainersTable

#: Keys of this screen that change something, and what a read-only dashboard says of them.
READ_ONLY_KEYS = {"s": "stopping", "x": "stopping", "delete": "deleting tests", "R": "launching", "E": "launching"}


class TestKeys(TestData):
    """The test screen's key handlers (see :class:`~octotui.tui.screens.test.TestScreen`)."""

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
