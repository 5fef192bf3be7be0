"""Quitting while tests run: stop them first, leave them running, or stay."""

from __future__ import annotations

import asyncio
import time
from typing import ClassVar

from textual import getters, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from octotui.client import ClientError
from octotui.protocol import TERMINAL_CONTAINER_STATES, TERMINAL_TEST_STATES, Test
from octotui.tui.dashboard import DashboardApp
from octotui.tui.format import plural

#: Test states in which quitting asks first.
ACTIVE_STATES = frozenset({"pending", "starting", "running"})
#: How long "stop them and quit" waits for the containers to stop before quitting anyway.
STOP_WAIT_S = 10.0


def active_tests(tests: list[Test]) -> list[Test]:
    """The tests that quitting would leave running."""
    return [t for t in tests if t.state in ACTIVE_STATES]


def stopped(test: Test) -> bool:
    """True once a test and all its containers have ended."""
    return test.state in TERMINAL_TEST_STATES or all(c.state in TERMINAL_CONTAINER_STATES for c in test.containers)


def quit_question(tests: list[Test], embedded: bool) -> str:
    """The dialog's text: how many tests run, and what leaving them means."""
    n = len(tests)
    names = ", ".join(t.name for t in tests[:3]) + (f" and {n - 3} more" if n > 3 else "")
    text = f"{plural(n, 'test')} running ({names})."
    if embedded:
        text += (
            " The local agent stops with the dashboard: left running, their containers run"
            " unattended until their duration ends, with nobody collecting their results."
        )
    return text + "\n\n[s] stop them and quit · [l] leave them running and quit · [esc] cancel"


class QuitScreen(ModalScreen[None]):
    """Asks what to do with the tests that still run; ``s`` stops them (waiting a little), then quits."""

    BINDINGS: ClassVar = [
        Binding("s", "stop_and_quit", "Stop them and quit"),
        Binding("l", "leave", "Leave them running and quit"),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, tests: list[Test], *, embedded: bool) -> None:
        super().__init__()
        self.tests = tests
        self.embedded = embedded
        self.stopping = False

    app = getters.app(DashboardApp)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="quit"):
            yield Label("Quit octotui?", classes="title")
            yield Static(quit_question(self.tests, self.embedded), id="quit-question", markup=False)
            yield Static("", id="quit-status", markup=False)

    def _status(self, text: str) -> None:
        self.query_one("#quit-status", Static).update(text)

    def action_cancel(self) -> None:
        if not self.stopping:
            self.dismiss(None)

    def action_leave(self) -> None:
        self.app.exit(0)

    def action_stop_and_quit(self) -> None:
        if not self.stopping:
            self.stopping = True
            self._stop_and_quit()

    @work(group="quit", exclusive=True, exit_on_error=False)
    async def _stop_and_quit(self) -> None:
        actions = self.app.actions
        ids = [t.id for t in self.tests]
        self._status(f"stopping {plural(len(ids), 'test')}…")
        refused = await actions.stop_tests(ids)
        if refused is not None:
            self.stopping = False
            self._status(f"✗ cannot stop: {refused}\n[l] quits anyway · [esc] stays")
            return
        deadline = time.monotonic() + STOP_WAIT_S
        while time.monotonic() < deadline:
            try:
                tests = {t.id: t for t in await actions.tests()}
            except ClientError as exc:
                self._status(f"cannot follow the stop: {exc.message}; quitting")
                break
            waiting = [i for i in ids if i in tests and not stopped(tests[i])]
            if not waiting:
                break
            left = deadline - time.monotonic()
            self._status(f"waiting for {len(waiting)} test(s) to stop… (quitting anyway in {left:.0f} s)")
            await asyncio.sleep(0.5)
        self.app.exit(0)
