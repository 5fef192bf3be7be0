"""One provider: its locations, agents and the command line that installs an agent in it."""

from __future__ import annotations

import shlex
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, Static


class ProviderScreen(ModalScreen[None]):
    """Shows how to add a machine to a provider."""

    BINDINGS: ClassVar = [Binding("escape,q", "close", "Close")]

    def __init__(self, provider_id: str) -> None:
        super().__init__()
        self.provider_id = provider_id

    def compose(self) -> ComposeResult:
        app = self.app
        provider = next((p for p in getattr(app, "providers", []) if p.id == self.provider_id), None)
        info = getattr(app, "info", None)
        with Vertical(id="dialog", classes="provider"):
            if provider is None:
                yield Label("This provider no longer exists.")
                return
            yield Label(f"Provider {provider.name}", classes="title", markup=False)
            yield Label(
                f"{provider.agents} agents · locations: {', '.join(provider.locations) or 'none yet'}", markup=False
            )
            url = (info.url if info and info.url else "") or getattr(app, "server_label", "URL")
            if provider.token:
                token = shlex.quote(provider.token)
                command = f"octotui-agent --server {shlex.quote(url)} --token={token} --location LOCATION"
                yield Label("Install an agent on a machine with:")
                yield Static(command, id="command", markup=False)
            else:
                yield Label("Its registration token is only shown to admin tokens.")
            yield Label("escape closes", classes="hint")

    def action_close(self) -> None:
        self.dismiss(None)
