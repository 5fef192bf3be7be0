"""A one-field dialog (a provider's name): enter accepts, escape cancels."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label


class PromptScreen(ModalScreen[str | None]):
    """Dismisses with the typed value (stripped) once ``check`` finds nothing wrong, None on escape.

    With ``submit``, the value is sent first and the prompt stays open, showing the server's
    reason, until ``submit`` returns None (done) or escape: a refusal never turns the next
    keystrokes into hotkeys of the screen below.
    """

    BINDINGS: ClassVar = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self,
        title: str,
        value: str = "",
        *,
        check: Callable[[str], str | None] | None = None,
        submit: Callable[[str], Awaitable[str | None]] | None = None,
    ) -> None:
        super().__init__()
        self.title_text = title
        self.value = value
        self.check = check
        self.submit = submit
        self.busy = False

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="prompt"):
            yield Label(self.title_text, classes="title", markup=False)
            yield Input(self.value, id="prompt-value")
            yield Label("", id="prompt-error", markup=False)
            yield Label("enter accepts · escape cancels", classes="hint")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def problem(self, value: str) -> str | None:
        """Why ``value`` cannot be accepted, or None."""
        if not value.strip():
            return "type a name"
        return self.check(value) if self.check else None

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        problem = self.problem(event.value) if event.value else None
        self.query_one("#prompt-error", Label).update(f"✗ {problem}" if problem else "")

    @on(Input.Submitted)
    async def _submitted(self, event: Input.Submitted) -> None:
        if self.busy:
            return
        error = self.query_one("#prompt-error", Label)
        problem = self.problem(event.value)
        if problem:
            error.update(f"✗ {problem}")
            return
        value = event.value.strip()
        if self.submit is not None:
            self.busy = True
            error.update("sending…")
            try:
                problem = await self.submit(value)
            finally:
                self.busy = False
            if problem:
                error.update(f"✗ {problem}")
                return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)
