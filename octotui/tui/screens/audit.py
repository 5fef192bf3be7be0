"""The server's audit log: every change, who made it (token name and role), when, from where."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Label

from octotui.protocol import AuditEntry
from octotui.tui.screens.base import DashboardScreen
from octotui.tui.widgets.tables import AuditTable


class AuditScreen(DashboardScreen):
    """Latest audit entries, newest first, fetched by the app's worker while shown."""

    BINDINGS: ClassVar = [Binding("escape", "back", "Back")]

    def compose(self) -> ComposeResult:
        yield self.status_bar()
        yield Label("Audit log · newest first · loading…", id="audit-title", markup=False)
        yield AuditTable(id="audit")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(AuditTable)
        table.sort_by("when")
        table.focus()
        self.octo.follow_audit(True)
        self.watch(self.app, "audit", self._audit_changed)

    def on_unmount(self) -> None:
        self.octo.follow_audit(False)

    def action_back(self) -> None:
        self.dismiss()

    def resync(self) -> None:
        self._audit_changed(self.octo.audit)

    def _audit_changed(self, audit: tuple[list[AuditEntry], str] | None) -> None:
        if audit is None or not self.feeding:
            return
        entries, error = audit
        title = self.query_one("#audit-title", Label)
        if error:
            title.update(f"Audit log unavailable: {error}")
            return
        title.update(f"Audit log · {len(entries)} latest changes, newest first")
        self.query_one(AuditTable).show(entries)
