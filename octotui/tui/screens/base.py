"""What every dashboard screen shares: the status bar bound to the app's connection state."""

from __future__ import annotations

from typing import Any

from textual import getters
from textual.screen import ModalScreen, Screen

from octotui.protocol import ServerInfo
from octotui.tui.dashboard import DashboardApp
from octotui.tui.state import Connection
from octotui.tui.widgets.status_bar import StatusBar


def thresholds_text(info: ServerInfo | None) -> str:
    """The health thresholds as the status bar shows them."""
    if info is None:
        return ""
    return f"late>{info.late_after:g}s off>{info.offline_after:g}s"


class DashboardScreen(Screen[Any]):
    """A screen with the status bar on top, kept in step with the app."""

    app = getters.app(DashboardApp)

    def status_bar(self) -> StatusBar:
        return StatusBar(self.app.server_label, id="status")

    @property
    def feeding(self) -> bool:
        """True when this screen is on top, or only a dialog covers it.

        A hidden screen does not feed its widgets: Textual repaints the top screen wherever a
        screen below it changed, so a hidden live table would cost a full repaint per tick.
        """
        top = self.app.screen
        return top is self or (isinstance(top, ModalScreen) and self in self.app.screen_stack[-2:])

    def on_screen_resume(self) -> None:
        self.resync()

    def resync(self) -> None:
        """Show the app's current values (after having been hidden)."""

    def on_mount(self) -> None:
        self.watch(self.app, "connection", self._connection_changed)
        self.watch(self.app, "info", self._info_changed)
        self.watch(self.app, "read_only", self._read_only_changed)

    @property
    def stale(self) -> bool:
        """True while the figures shown are old: the server is unreachable or refuses the polls."""
        return self.has_class("-stale")

    def stale_changed(self, stale: bool) -> None:
        """The figures became stale, or fresh again (dimming is the stylesheet's)."""

    def _connection_changed(self, connection: Connection) -> None:
        self.query_one(StatusBar).connection = connection
        stale = connection.state in ("unreachable", "refused") and connection.last_update > 0
        if stale != self.stale:
            self.set_class(stale, "-stale")
            self.stale_changed(stale)

    def _info_changed(self, info: ServerInfo | None) -> None:
        self.query_one(StatusBar).thresholds = thresholds_text(info)

    def _read_only_changed(self, read_only: bool) -> None:
        self.query_one(StatusBar).read_only = read_only
        self.refresh_bindings()
