"""The server's audit log: every change, who made it (token name and role), when, from where."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Label, Static

from octotui.protocol import AuditEntry
from octotui.tui import messages
from octotui.tui.rows import audit_rows
from octotui.tui.screens.base import DashboardScreen
from octotui.tui.widgets.tables import AuditTable


class AuditScreen(DashboardScreen):
    """Latest audit entries, newest first, fetched by the app's worker while shown."""

    BINDINGS: ClassVar = [Binding("escape", "back", "Back")]

    def __init__(self) -> None:
        super().__init__()
        self._entries: dict[str, AuditEntry] = {}
        self._line = ""

    def compose(self) -> ComposeResult:
        yield self.status_bar()
        yield Label("Audit log · newest first · loading…", id="audit-title", markup=False)
        yield AuditTable(id="audit")
        yield Static("", id="audit-line", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(AuditTable)
        table.sort_by("when", reverse=True)  # newest first: the arrow says descending
        table.focus()
        self.app.post_message(messages.DetailOpened("audit"))
        self.watch(self.app, "audit", self._audit_changed)

    def on_unmount(self) -> None:
        self.app.post_message(messages.DetailClosed("audit"))

    def action_back(self) -> None:
        self.dismiss()

    def resync(self) -> None:
        self._audit_changed(self.app.audit)

    def _audit_changed(self, audit: tuple[list[AuditEntry], str] | None) -> None:
        if audit is None or not self.feeding:
            return
        entries, error = audit
        title = self.query_one("#audit-title", Label)
        if error:
            title.update(f"Audit log unavailable: {error}")
            return
        n = len(entries)
        title.update(f"Audit log · {'the latest change' if n == 1 else f'{n} latest changes'}, newest first")
        self._entries = {str(e.id): e for e in entries}
        self.query_one(AuditTable).sync(audit_rows(entries))
        self._show_line()

    def _show_line(self) -> None:
        # The selected entry in full: at 80 columns the table cuts long names and details.
        entry = self._entries.get(self.query_one(AuditTable).selected_key or "")
        line = audit_line(entry) if entry else ""
        if line != self._line:
            self._line = line
            self.query_one("#audit-line", Static).update(line)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_line()


def audit_line(entry: AuditEntry) -> str:
    """One audit entry in full words."""
    when = entry.ts.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    text = f"{when} · {entry.actor} ({entry.role}) · {entry.action} {entry.target}"
    if entry.detail:
        text += f" · {entry.detail}"
    return text + (f" · from {entry.address}" if entry.address else "")
