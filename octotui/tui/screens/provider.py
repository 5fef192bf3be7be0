"""The install dialog of a provider: the exact lines that add a machine to it, ready to copy."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from octotui.protocol import Provider
from octotui.tui.install import TOKEN_PLACEHOLDER, InstallLine, check_location, install_lines

if TYPE_CHECKING:
    from octotui.tui.app import OctoApp


class ProviderScreen(ModalScreen[None]):
    """Shows how to add a machine to a provider; ``c`` copies the highlighted line."""

    BINDINGS: ClassVar = [
        Binding("escape", "close", "Close"),
        Binding("c", "copy", "Copy line"),
        Binding("ctrl+y", "copy", "Copy line", show=False, priority=True),
    ]

    def __init__(self, provider_id: str) -> None:
        super().__init__()
        self.provider_id = provider_id
        self.lines: list[InstallLine] = []
        self._token = ""

    @property
    def octo(self) -> OctoApp:
        return cast("OctoApp", self.app)

    @property
    def provider(self) -> Provider | None:
        return next((p for p in self.octo.providers if p.id == self.provider_id), None)

    def server_url(self) -> str:
        """The URL agents should call: the server's own idea of it, else the one we use."""
        info = self.octo.info
        return (info.url if info and info.url else "") or self.octo.client.base_url

    def compose(self) -> ComposeResult:
        provider = self.provider
        with Vertical(id="dialog", classes="install"):
            if provider is None:
                yield Label("This provider no longer exists.")
                yield Label("escape closes", classes="hint")
                return
            yield Label(f"Install an agent in provider {provider.name}", classes="title", markup=False)
            yield Label(
                f"{provider.agents} agents · locations: {', '.join(provider.locations) or 'none yet'}",
                id="install-summary",
                markup=False,
            )
            with Horizontal(classes="field"):
                yield Label("Location ")
                yield Input(provider.locations[0] if provider.locations else "default", id="location")
            yield Label("", id="location-error")
            yield OptionList(id="install-lines")
            yield Label("", id="token-note", markup=False)
            yield Label("↑↓ select · c copies the line · tab location · esc closes", classes="hint")

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
        return "" if self.octo.read_only else provider.token

    def _show(self) -> None:
        location = self.query_one("#location", Input).value
        problem = check_location(location)
        self.query_one("#location-error", Label).update(f"✗ {problem}" if problem else "")
        self.lines = install_lines(self.server_url(), self._token, location if not problem else "LOCATION")
        options = self.query_one(OptionList)
        highlighted = options.highlighted
        options.clear_options()
        options.add_options(Option(f"{line.label}:\n{line.command}") for line in self.lines)
        options.highlighted = highlighted if highlighted is not None else 1
        note = self.query_one("#token-note", Label)
        if self._token:
            note.update("The token registers agents in this provider: keep it secret.")
        elif self.octo.read_only and self.provider is not None and self.provider.token:
            note.update(
                f"Read-only mode: the registration token is hidden ({TOKEN_PLACEHOLDER} stands for it);"
                " run octotui without --read-only to get the complete lines."
            )
        else:
            note.update(
                "The registration token is only shown to admin tokens: run octotui with an admin "
                "token (or ask an admin) to get the complete lines."
            )

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
        warning = "" if self._token else " (without the token: an admin token is needed)"
        self.notify(f"Copied the {line.label} line to the clipboard{warning}", title="Install")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # "c" types into the location field when it has focus.
        return not (action == "copy" and isinstance(self.focused, Input))

    def action_close(self) -> None:
        self.dismiss(None)
