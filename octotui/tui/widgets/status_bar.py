"""One line at the top: read-only badge, connection state and freshness, server, health thresholds."""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.reactive import var
from textual.widgets import Label

from octotui.tui import format as fmt
from octotui.tui.state import Connection


class StatusBar(Horizontal):
    """Shows ``connection`` (set by its screen) and re-renders only the parts whose text changed."""

    connection: var[Connection] = var(Connection, always_update=False)
    thresholds: var[str] = var("")
    read_only: var[bool] = var(False)
    server_label: var[str] = var("")

    def __init__(self, server_label: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.set_reactive(StatusBar.server_label, server_label)
        self._shown = ""

    def compose(self) -> ComposeResult:
        # The badge and the state first: at 80 columns the server's address is what gets cut.
        yield Label(" READ-ONLY ", id="sb-readonly")
        yield Label("connecting", id="sb-state", classes="-connecting", markup=False)
        yield Label(self.server_label, id="sb-server", markup=False)
        yield Label("", id="sb-thresholds")

    def on_mount(self) -> None:
        self.query_one("#sb-readonly").display = self.read_only
        self.set_interval(1.0, self._tick)
        self._tick()

    def watch_connection(self) -> None:
        if self.is_mounted:
            self._tick()

    def watch_thresholds(self, value: str) -> None:
        if self.is_mounted:
            self.query_one("#sb-thresholds", Label).update(value)

    def watch_server_label(self, value: str) -> None:
        if self.is_mounted:
            self.query_one("#sb-server", Label).update(value)

    def watch_read_only(self, value: bool) -> None:
        if self.is_mounted:
            self.query_one("#sb-readonly").display = value

    def state_text(self) -> tuple[str, str]:
        """The connection cell's text and its CSS class."""
        c = self.connection
        now = time.time()
        if c.note:
            return c.note, "-bad"
        if c.state == "ok":
            age = now - c.last_update
            if age < max(3.0, c.refresh * 3):
                return "● live", "-ok"
            return f"● updated {int(age)} s ago", "-stale"
        if c.state in ("unreachable", "refused"):
            wait = max(0, round(c.retry_at - now))
            what = "unreachable" if c.state == "unreachable" else f"error: {c.message}"
            suffix = f", retrying in {wait} s" if wait > 0 else ", retrying"
            if c.last_update:
                suffix += f" · stale: {fmt.duration(now - c.last_update)} old"
            return what + suffix, "-bad"
        return "connecting…", "-connecting"

    def _tick(self) -> None:
        text, cls = self.state_text()
        label = self.query_one("#sb-state", Label)
        if self._shown != text:
            self._shown = text
            label.update(text)
        if not label.has_class(cls):
            label.set_classes(cls)
