"""One line of tabs over a switched pane: each names its pane, its key and how many rows it holds.

A tab bar of one line, not :class:`textual.widgets.TabbedContent`'s two: at 80x24 every line of the
test screen is a row of a table or of a chart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Label


@dataclass(frozen=True)
class Pane:
    """A pane's id (that of the widget it shows), its title and the key that shows it."""

    id: str
    title: str
    key: str


class PaneTabs(Horizontal):
    """Tabs of panes; a click on one posts :class:`Chosen`. The screen says which is active and
    what each tab's count reads (attributes down)."""

    @dataclass
    class Chosen(Message):
        """A click asked for the pane ``pane``."""

        pane: str

    def __init__(self, panes: Sequence[Pane], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.panes = tuple(panes)
        self._notes = {p.id: "" for p in self.panes}
        self._active = self.panes[0].id if self.panes else ""

    def compose(self) -> ComposeResult:
        for pane in self.panes:
            tab = Label(self._text(pane), id=f"tab-{pane.id}", classes="pane-tab", markup=False)
            tab.set_class(pane.id == self._active, "-active")
            yield tab

    def _text(self, pane: Pane) -> str:
        note = self._notes[pane.id]
        return f"{pane.key} {pane.title}" + (f" {note}" if note else "")

    @property
    def active(self) -> str:
        """The id of the pane shown."""
        return self._active

    def activate(self, pane_id: str) -> None:
        """Mark ``pane_id``'s tab as the one shown."""
        self._active = pane_id
        for pane in self.panes:
            self.query_one(f"#tab-{pane.id}").set_class(pane.id == pane_id, "-active")

    def note(self, pane_id: str, text: str, *, alert: bool = False) -> None:
        """What ``pane_id``'s tab says after its title (a count), in the alert colour when ``alert``;
        repainted only when it changed."""
        tab = self.query_one(f"#tab-{pane_id}", Label)
        tab.set_class(alert, "-alert")
        if self._notes.get(pane_id) == text:
            return
        self._notes[pane_id] = text
        tab.update(self._text(next(p for p in self.panes if p.id == pane_id)))

    def text_of(self, pane_id: str) -> str:
        """What ``pane_id``'s tab reads."""
        return self._text(next(p for p in self.panes if p.id == pane_id))

    def on_click(self, event: events.Click) -> None:
        widget = event.widget
        if widget is not None and widget.id and widget.id.startswith("tab-"):
            event.stop()
            self.post_message(self.Chosen(widget.id.removeprefix("tab-")))
