"""The ``:`` command line (k9s): one line at the bottom of the screen, suggestions above it as you
type, Tab completes, enter runs, escape closes. What a command does is the app's
(:meth:`octotui.tui.app.OctoApp.command`); the words are :mod:`octotui.tui.commandline`'s."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Input, Label

from octotui.tui.commandline import COMMANDS, State, candidates, complete

#: The most suggestions shown above the line.
SHOWN = 6
#: What a command line's runner answers: why the line cannot run, or what to do once it closed.
Outcome = str | Callable[[], object]


class _Completion(Suggester):
    """The first candidate, shown greyed after the cursor (→ or Tab takes it)."""

    def __init__(self, state: Callable[[], State]) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self._state = state

    async def get_suggestion(self, value: str) -> str | None:
        found = candidates(value, self._state())
        return found[0] if found and value else None


def describe(found: list[str]) -> str:
    """The suggestions line: what completes the line, with each command's purpose when few."""
    if not found:
        return ""
    if len(found) <= 3 and all(" " not in f for f in found):
        return "   ".join(f":{f} {COMMANDS[f][1]}" for f in found)
    more = len(found) - SHOWN
    return "  ".join(f":{f}" for f in found[:SHOWN]) + (f"  (+{more})" if more > 0 else "")


class CommandScreen(ModalScreen[Callable[[], object] | None]):
    """The command line over the bottom of the current screen; dismissed with what to do once it
    is closed (None: nothing), which the app runs then."""

    AUTO_FOCUS = "#command-input"
    BINDINGS: ClassVar = [
        Binding("escape", "close", "Close"),
        # Before the screen's focus-next: Tab completes here.
        Binding("tab", "complete", "Complete", priority=True),
    ]

    def __init__(self, state: Callable[[], State], run: Callable[[str], Outcome], initial: str = "") -> None:
        super().__init__()
        self._state = state
        self._run = run
        self._initial = initial

    def compose(self) -> ComposeResult:
        with Vertical(id="command-box"):
            yield Label("", id="command-hints", markup=False)
            with Horizontal(id="command-row"):
                yield Label(":", id="command-prompt")
                yield Input(
                    self._initial,
                    id="command-input",
                    suggester=_Completion(self._state),
                    # Reads as a hint, not as typed text, in 16 colours too (where grey is white).
                    placeholder="a command: tab lists them (agents, test NAME, help…)",
                    select_on_focus=False,
                )

    def on_mount(self) -> None:
        self._show_hints(self._initial)

    @property
    def field(self) -> Input:
        return self.query_one("#command-input", Input)

    def on_key(self, event: events.Key) -> None:
        # A key that arrives before the line has focus (typed fast after ":") still goes into it.
        field = self.field
        if not field.has_focus and event.is_printable and event.character:
            event.stop()
            field.insert_text_at_cursor(event.character)
            field.focus()

    def action_complete(self) -> None:
        field = self.field
        completed = complete(field.value, self._state())
        if completed != field.value:
            field.value = completed
            field.cursor_position = len(completed)
        else:
            self._show_hints(field.value, force=True)

    def action_close(self) -> None:
        self.dismiss(None)

    @on(Input.Changed, "#command-input")
    def _changed(self, event: Input.Changed) -> None:
        self._show_hints(event.value)

    def _show_hints(self, value: str, *, force: bool = False) -> None:
        hints = self.query_one("#command-hints", Label)
        hints.remove_class("-error")
        found = candidates(value, self._state())
        if not value.strip() and not force:
            hints.update("Tab completes · enter runs · escape closes · :help lists the keys")
        elif not found:
            hints.update("no command or name starts so · Tab lists what may follow")
        else:
            hints.update(describe(found))

    @on(Input.Submitted, "#command-input")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        outcome = self._run(event.value)
        if isinstance(outcome, str):
            hints = self.query_one("#command-hints", Label)
            hints.update(f"✗ {outcome}")
            hints.add_class("-error")
            return
        self.dismiss(outcome)
