"""Pick the baseline of an ended test: an earlier ended test, those of the same provider and name
first, the newest first. Dismisses with the chosen test's id, or None (escape)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from octotui.protocol import TERMINAL_TEST_STATES, Test
from octotui.tui.rows import test_state


def baseline_candidates(test: Test, tests: Iterable[Test]) -> list[Test]:
    """The ended tests other than ``test`` created before it: same provider and name first, then
    the others, each group newest first."""
    earlier = [
        t for t in tests if t.id != test.id and t.state in TERMINAL_TEST_STATES and t.created_at <= test.created_at
    ]
    earlier.sort(key=lambda t: t.created_at, reverse=True)
    earlier.sort(key=lambda t: not (t.provider == test.provider and t.name == test.name))
    return earlier


def baseline_option(t: Test) -> str:
    """One line of the picker: name, state, when, provider, id."""
    when = t.created_at.astimezone().strftime("%m-%d %H:%M")
    return f"{t.name} · {test_state(t)} · {when} · {t.provider_name or t.provider} · {t.id}"


class BaselinePicker(ModalScreen[str | None]):
    """An OptionList of candidate baselines over the test screen."""

    BINDINGS: ClassVar = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, test: Test, candidates: list[Test]) -> None:
        super().__init__()
        self.test = test
        self.candidates = candidates

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="baseline"):
            yield Label(f"Compare {self.test.name} with…", classes="title", markup=False)
            yield OptionList(*(Option(baseline_option(t), id=t.id) for t in self.candidates), id="baselines")
            yield Label("enter compares · esc cancels", classes="hint")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)
