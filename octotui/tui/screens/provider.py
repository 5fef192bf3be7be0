"""The install dialog of a provider: the exact lines that add a machine to it, ready to copy."""

from __future__ import annotations

from typing import ClassVar

from textual import getters, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from octotui.protocol import Provider
from octotui.tui.dashboard import DashboardApp
from octotui.tui.format import plural
from octotui.tui.forms import check_location
from octotui.tui.install import TOKEN_PLACEHOLDER, InstallLine, install_lines
from octotui.tui.screens.confirm import ConfirmScreen

#: Why the embedded mode's lines serve this machine only.
EMBEDDED_NOTE = (
    "The embedded server is for this machine: its loopback port changes at every start."
    " For agents on other machines, run `octotui server`."
)


def rotation_question(name: str) -> str:
    """The confirmation asked before a provider gets a new registration token."""
    return (
        f"Give provider {name} a new registration token? The old one stops working "
        "for new agents; agents already registered are not affected."
    )


class ProviderScreen(ModalScreen[None]):
    """Shows how to add a machine to a provider; ``c`` copies the highlighted line."""

    BINDINGS: ClassVar = [
        Binding("escape", "close", "Close"),
        Binding("c", "copy", "Copy line"),
        Binding("ctrl+y", "copy", "Copy line", show=False, priority=True),
        Binding("k", "rotate", "New token"),
    ]

    def __init__(self, provider_id: str) -> None:
        super().__init__()
        self.provider_id = provider_id
        self.lines: list[InstallLine] = []
        self._token = ""

    app = getters.app(DashboardApp)

    @property
    def provider(self) -> Provider | None:
        return next((p for p in self.app.providers if p.id == self.provider_id), None)

    def server_url(self) -> str:
        """The URL agents should call: the server's own idea of it, else the one we use."""
        info = self.app.info
        return (info.url if info and info.url else "") or self.app.actions.base_url

    def compose(self) -> ComposeResult:
        provider = self.provider
        with Vertical(id="dialog", classes="install"):
            if provider is None:
                yield Label("This provider no longer exists.")
                yield Label("escape closes", classes="hint")
                return
            yield Label(f"Install an agent in provider {provider.name}", classes="title", markup=False)
            yield Label(
                f"{plural(provider.agents, 'agent')} · locations: {', '.join(provider.locations) or 'none yet'}",
                id="install-summary",
                markup=False,
            )
            if self.app.embedded:
                yield Label(EMBEDDED_NOTE, id="embedded-note", markup=False)
            with Horizontal(classes="field"):
                yield Label("Location ")
                yield Input(provider.locations[0] if provider.locations else "default", id="location")
            yield Label("", id="location-error")
            yield OptionList(id="install-lines")
            yield Label("", id="token-note", markup=False)
            yield Label("", id="install-keys", classes="hint")

    def on_mount(self) -> None:
        if self.provider is None:
            return
        self._token = self._visible_token(self.provider)
        self._show()
        self.watch(self.app, "providers", self._providers_changed)
        self.query_one(OptionList).focus()

    def _providers_changed(self, providers: list[Provider]) -> None:
        provider = self.provider
        if provider is not None and self._visible_token(provider) != self._token:
            self._token = self._visible_token(provider)  # rotated meanwhile
            self._show()

    def _visible_token(self, provider: Provider) -> str:
        # Read-only mode never shows a secret, whatever the token's role (a wall screen, a share).
        return "" if self.app.read_only else self.app.actions.provider_tokens.get(provider.id, "")

    def _show(self) -> None:
        location = self.query_one("#location", Input).value
        problem = check_location(location)
        error = self.query_one("#location-error", Label)
        error.update(f"✗ {problem}" if problem else "")
        error.display = bool(problem)  # its line only when it has something to say: 24 rows are few
        self.lines = install_lines(self.server_url(), self._token, location if not problem else "LOCATION")
        options = self.query_one(OptionList)
        highlighted = options.highlighted
        options.clear_options()
        options.add_options(Option(f"{line.label}:\n{line.command}") for line in self.lines)
        options.highlighted = highlighted if highlighted is not None else 1
        note = self.query_one("#token-note", Label)
        if self._token:
            note.update(
                "The token registers agents in this provider: keep it secret. The server keeps only"
                " a hash of it and never shows it again (k makes a new one)."
            )
        elif self.app.read_only:
            note.update(
                f"Read-only mode: {TOKEN_PLACEHOLDER} stands for the registration token; an admin token"
                " (without --read-only) gets the complete lines."
            )
        else:
            note.update(
                f"{TOKEN_PLACEHOLDER} stands for the registration token: the server keeps tokens hashed"
                " and shows one only when it is made. k gives this provider a new one; agents already"
                " registered keep working."
            )
        keys = "↑↓ select · c copies the line · " + ("" if self.app.read_only else "k new token · ")
        self.query_one("#install-keys", Label).update(keys + "tab location · esc closes")

    @on(Input.Changed, "#location")
    def _location_changed(self) -> None:
        self._show()

    @on(Input.Submitted, "#location")
    def _location_done(self) -> None:
        self.query_one(OptionList).focus()

    @on(OptionList.OptionSelected)
    def _selected(self) -> None:
        self.action_copy()

    def action_copy(self) -> None:
        """Copy the highlighted line to the clipboard (OSC 52: the terminal must allow it)."""
        if not self.lines:
            return
        problem = check_location(self.query_one("#location", Input).value)
        if problem:
            self.notify(f"Location: {problem}", severity="error")
            return
        index = self.query_one(OptionList).highlighted or 0
        line = self.lines[index]
        self.app.copy_to_clipboard(line.command)
        warning = "" if self._token else f" (with {TOKEN_PLACEHOLDER} for the token)"
        self.notify(f"Copied the {line.label} line to the clipboard{warning}", title="Install")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "rotate" and self.app.read_only:
            return None
        # "c" and "k" type into the location field when it has focus.
        return not (action in ("copy", "rotate") and isinstance(self.focused, Input))

    def action_rotate(self) -> None:
        """Give the provider a new registration token (after a confirmation) and show it."""
        provider = self.provider
        if provider is None:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._rotate(provider.id, provider.name)

        self.app.push_screen(ConfirmScreen(rotation_question(provider.name)), answered)

    @work(exclusive=True, exit_on_error=False)
    async def _rotate(self, provider_id: str, name: str) -> None:
        why = await self.app.actions.submit_rotation(provider_id)
        if why is not None:
            self.notify(why, title=f"Cannot rotate the token of {name}", severity="error")
            return
        self.notify(f"New registration token for {name}; registered agents are not affected", title="Provider")
        if self.is_attached and (provider := self.provider) is not None:
            self._token = self._visible_token(provider)
            self._show()

    def action_close(self) -> None:
        self.dismiss(None)
