"""A DataTable updated row by row and cell by cell, never cleared and rebuilt on a tick."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.color import Color
from textual.geometry import Region
from textual.message import Message
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowDoesNotExist, RowKey

from octotui.tui.format import bar as fmt_bar


def theme_style(variables: Mapping[str, str], name: str) -> Style | str:
    """A Rich style for the theme variable ``name`` (its alpha blended onto the background)."""
    if name in ("bold", "dim", "italic"):
        return name
    value = variables.get(name)
    if value is None:
        return ""
    try:
        color = Color.parse(variables.get("background", "#000000")) + Color.parse(value)
    except Exception:
        return ""
    return Style(color=color.rich_color)


@dataclass(frozen=True)
class Column:
    """One column: its key, header label, width in cells and alignment."""

    key: str
    label: str
    width: int | None = None
    justify: str = "left"
    #: The last column may stretch over the width the others leave (never below ``width``).
    stretch: bool = False
    #: The most a stretching column takes (None: all that is left), so that on a wide terminal the
    #: figures stay next to the name they belong to.
    max_width: int | None = None


@dataclass(frozen=True)
class Cell:
    """What a cell shows (``text``), in which theme colour (``style``, a theme variable name such as
    ``"success"``) and how it sorts (``sort``)."""

    text: str
    style: str | None = None
    sort: Any = None
    #: Drawn as an in-cell bar of this fraction (0..1) of ``bar_width`` cells before ``text``
    #: (None: no bar), in ``style``'s colour.
    bar: float | None = None
    bar_width: int = 3

    @property
    def sort_key(self) -> Any:
        return self.text.lower() if self.sort is None else self.sort


def fit_widths(columns: Sequence[Column], longest: Mapping[str, int], room: int) -> dict[str, int]:
    """Each column's width for ``room`` cells of text: its label's or its longest text's (``longest``,
    by key), never below ``width`` nor above ``max_width``. Too wide: the widest column gives way a
    cell at a time down to its ``width``, the stretching one only after all others; room to spare
    goes to the stretching one (up to its ``max_width``)."""
    floor = {c.key: c.width or 1 for c in columns}
    want: dict[str, int] = {}
    for c in columns:
        width = max(floor[c.key], len(c.label), longest.get(c.key, 0))
        want[c.key] = max(floor[c.key], min(width, c.max_width)) if c.max_width is not None else width
    stretch = next((c.key for c in columns if c.stretch), None)
    excess = sum(want.values()) - room
    while excess > 0:
        wider = [k for k in want if k != stretch and want[k] > floor[k]]
        if not wider:
            break
        widest = max(wider, key=lambda k: want[k])
        want[widest] -= 1
        excess -= 1
    if stretch is not None:
        if excess > 0:
            want[stretch] = max(floor[stretch], want[stretch] - excess)
        elif excess < 0:
            cap = next(c.max_width for c in columns if c.key == stretch)
            want[stretch] = (
                min(want[stretch] - excess, max(cap, floor[stretch])) if cap is not None else want[stretch] - excess
            )
    return want


class SortText(Text):
    """A cell's rendered text that remembers how it sorts and the key of its row."""

    sort_key: Any = None
    #: DataTable.sort hands its key function the cells, never the row key: the default order needs it.
    row: str = ""


# --- The only place that reaches into DataTable's private internals ---------------------------------
# Textual (8.2) has no public way to (1) put a value in a cell without repainting the whole table
# (``update_cell`` calls ``refresh()``, and bumps the render-cache counter once per cell, which makes the
# table rebuild its list of every row once per changed cell) nor (2) say that a column's width changed.
# Both costs were measured (see ``KeyedTable.sync``). tests/test_keyed_table.py fails loudly when a
# Textual release changes what these two functions rely on; pyproject.toml bounds textual to 8.2.x.


def _put_cells(table: DataTable[Text], cells: Iterable[tuple[RowKey, ColumnKey, Text]]) -> bool:
    """Put each value into its cell and invalidate the table's render caches once; repaint nothing
    (the caller repaints the rows it changed). False, having done nothing, when the table's data is
    not where Textual 8.2 keeps it, or a cell does not exist: the caller then uses ``update_cell``."""
    data = getattr(table, "_data", None)
    count = getattr(table, "_update_count", None)
    cells = list(cells)
    if not isinstance(data, dict) or not isinstance(count, int):
        return False
    if any(row not in data or column not in data[row] for row, column, _ in cells):
        return False
    for row, column, value in cells:
        data[row][column] = value
    table._update_count = count + 1
    return True


def _columns_resized(table: DataTable[Text]) -> None:
    """After a column's ``width`` changed: recompute the scrollable size when idle, drop cached renders."""
    table._require_update_dimensions = True
    table._clear_caches()


def _ordered(value: Any) -> tuple[int, Any]:
    # Mixed None/number/str sort keys must never raise: None last, then by type name.
    if value is None:
        return (2, 0)
    if isinstance(value, int | float):
        return (0, float(value))
    return (1, str(value))


class KeyedTable(DataTable[Text]):
    """A table whose rows have stable keys; :meth:`sync` adds, updates and removes rows by key.

    Only cells whose value changed are written, and only their row is repainted: ``update_cell``
    repaints the whole table, the largest share of a live dashboard's terminal output.
    """

    COLUMNS: ClassVar[Sequence[Column]] = ()
    #: Rows can be marked (space) for an action on several at once; marked rows are drawn in the
    #: ``keyed-table--marked`` style.
    MARKABLE: ClassVar[bool] = False
    #: Columns as wide as their longest text (between ``width`` and ``max_width``) rather than fixed:
    #: when the terminal is too narrow the widest give way first, the stretching one last (see
    #: :func:`fit_widths`). For tables of a few rows: each sync measures every cell.
    FIT_COLUMNS: ClassVar[bool] = False
    COMPONENT_CLASSES: ClassVar[set[str]] = {"keyed-table--marked"}
    BINDINGS: ClassVar = [
        Binding("o", "cycle_sort", "Sort", show=False),
        Binding("home", "scroll_top", "First row", show=False),
        Binding("end", "scroll_bottom", "Last row", show=False),
        Binding("space", "toggle_mark", "Mark", show=False),
    ]

    @dataclass
    class MarksChanged(Message):
        """The set of marked rows of ``table`` changed (``marks``: their keys)."""

        table: KeyedTable
        marks: frozenset[str]

        @property
        def control(self) -> KeyedTable:
            return self.table

    @dataclass
    class SortChanged(Message):
        """The sort column or direction of a table changed."""

        table: KeyedTable
        column: str | None
        reverse: bool

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        # The cells' own colours over the cursor's: a failed or lost state under the cursor still
        # reads red (the cursor's background marks the row; plain cells take its foreground).
        super().__init__(
            id=id, classes=classes, cursor_type="row", zebra_stripes=False, cursor_foreground_priority="renderable"
        )
        self._cells: dict[str, tuple[Cell, ...]] = {}
        #: Row key -> how the row sorts while no column is chosen (absent: order of arrival).
        self._order: dict[str, Any] = {}
        self.sort_column: str | None = None
        self.sort_reverse = False
        #: Keys of the marked rows (only rows the table shows: a row that leaves loses its mark).
        self.marks: set[str] = set()

    def on_mount(self) -> None:
        for col in self.COLUMNS:
            self.add_column(col.label, key=col.key, width=col.width)

    def on_resize(self) -> None:
        self._stretch()

    def _stretch(self) -> None:
        """Give the stretching column whatever width the other columns leave."""
        if self.FIT_COLUMNS:
            self._fit_columns()
            return
        stretch = next((c for c in self.COLUMNS if c.stretch), None)
        if stretch is None or not self.size.width:
            return
        others = sum((c.width or 0) + 2 * self.cell_padding for c in self.COLUMNS if c is not stretch)
        room = self.size.width - others - 2 * self.cell_padding - 1  # 1: the vertical scrollbar
        column = self.columns.get(ColumnKey(stretch.key))
        width = max(stretch.width or 1, room)
        if stretch.max_width is not None:
            width = min(width, max(stretch.max_width, stretch.width or 1))
        if column is not None and column.width != width:
            column.width = width
            _columns_resized(self)

    def _fit_columns(self) -> None:
        if not self.size.width:
            return
        longest: dict[str, int] = {}
        for cells in self._cells.values():
            for col, cell in zip(self.COLUMNS, cells, strict=True):
                size = len(cell.text) + (cell.bar_width + 1 if cell.bar is not None else 0)
                longest[col.key] = max(longest.get(col.key, 0), size)
        for col in self.COLUMNS:
            if col.key == self.sort_column:  # its label and the sort's arrow
                longest[col.key] = max(longest.get(col.key, 0), len(col.label) + 1)
        room = self.size.width - 2 * self.cell_padding * len(self.COLUMNS) - 1  # 1: the vertical scrollbar
        resized = False
        for key, width in fit_widths(self.COLUMNS, longest, room).items():
            column = self.columns.get(ColumnKey(key))
            if column is not None and column.width != width:
                column.width = width
                resized = True
        if resized:
            _columns_resized(self)
            self.refresh()

    def _style(self, name: str | None) -> Style | str:
        if not name:
            return ""
        return theme_style(self.app.theme_variables, name)

    def _cell_text(self, key: str, col: Column, cell: Cell) -> SortText:
        style = self._style(cell.style)
        if cell.bar is not None:
            text = SortText(justify=col.justify, no_wrap=True)  # type: ignore[arg-type]
            text.append(fmt_bar(cell.bar, cell.bar_width), style or self._style("foreground-muted"))
            text.append(" " + cell.text, style)
        else:
            text = SortText(cell.text, style=style, justify=col.justify, no_wrap=True)  # type: ignore[arg-type]
        if key in self.marks:
            text.stylize(self.get_component_rich_style("keyed-table--marked", partial=True))
        text.sort_key = _ordered(cell.sort_key)
        text.row = key
        return text

    # --- marks --------------------------------------------------------------------------------

    def action_toggle_mark(self) -> None:
        """Mark the row under the cursor, or unmark it; the cursor moves on to the next row."""
        key = self.selected_key
        if key is None or not self.MARKABLE:
            return
        if key in self.marks:
            self.marks.discard(key)
        else:
            self.marks.add(key)
        self._repaint_marks({key})
        if self.cursor_row < self.row_count - 1:
            self.move_cursor(row=self.cursor_row + 1)

    def clear_marks(self) -> bool:
        """Unmark every row; False when none was marked."""
        if not self.marks:
            return False
        keys, self.marks = set(self.marks), set()
        self._repaint_marks(keys)
        return True

    def marked_or_selected(self) -> list[str]:
        """The marked rows' keys in display order, else the selected row's (empty: neither)."""
        if self.marks:
            return [k for k in self.row_keys if k in self.marks]
        key = self.selected_key
        return [key] if key is not None else []

    def _repaint_marks(self, keys: set[str]) -> None:
        writes = [
            (RowKey(k), ColumnKey(col.key), self._cell_text(k, col, cell))
            for k in keys
            if (cells := self._cells.get(k)) is not None
            for col, cell in zip(self.COLUMNS, cells, strict=True)
        ]
        if writes and _put_cells(self, writes):
            self._refresh_rows([RowKey(k) for k in keys])
        else:
            for row_key, col_key, text in writes:
                self.update_cell(row_key, col_key, text)
        self.post_message(self.MarksChanged(self, frozenset(self.marks)))

    def sync(self, rows: Mapping[str, Sequence[Cell]], order: Mapping[str, Any] | None = None) -> None:
        """Make the table show exactly ``rows`` (key -> cells), in the current sort order.

        ``order`` (key -> sort key) is the default order, used while no column is chosen.
        """
        reorder = False
        if order is not None:
            reorder = dict(order) != self._order
            self._order = dict(order)
        gone = [k for k in self._cells if k not in rows]
        for key in gone:
            self.remove_row(key)
            del self._cells[key]
        if self.marks.intersection(gone):
            self.marks.difference_update(gone)
            self.post_message(self.MarksChanged(self, frozenset(self.marks)))
        writes: list[tuple[RowKey, ColumnKey, Text]] = []
        changed: list[RowKey] = []
        for key, cells in rows.items():
            new = tuple(cells)
            old = self._cells.get(key)
            if old is new:
                continue
            if old is None:
                self.add_row(*(self._cell_text(key, c, v) for c, v in zip(self.COLUMNS, new, strict=True)), key=key)
                reorder = True
            elif old != new:
                for col, before, after in zip(self.COLUMNS, old, new, strict=True):
                    if before != after:
                        writes.append((RowKey(key), ColumnKey(col.key), self._cell_text(key, col, after)))
                        if not changed or changed[-1] != RowKey(key):
                            changed.append(RowKey(key))
                        if col.key == self.sort_column and before.sort_key != after.sort_key:
                            reorder = True
            self._cells[key] = new
        # One cache invalidation for the whole sync: bumping it per cell made DataTable rebuild its
        # list of every row for each changed row (12 of 14 s of CPU at 1,000 agents).
        if writes and _put_cells(self, writes):
            self._refresh_rows(changed)
        else:  # nothing changed, or Textual moved its internals: the public (slower) way
            for row_key, col_key, text in writes:
                self.update_cell(row_key, col_key, text)
        if reorder and (self.sort_column is not None or self._order):
            self._apply_sort()
        if self.FIT_COLUMNS and (writes or reorder or gone):
            self._fit_columns()

    def _refresh_rows(self, keys: Sequence[RowKey]) -> None:
        """Repaint these rows only, where visible. ``refresh_row`` sums the heights of every row above
        the one it repaints (O(rows) each); ours are one line high, so a row's place is its index."""
        width = max(self.size.width, self.virtual_size.width)
        top = self.header_height if self.show_header else 0
        window, offset = self.window_region, self.scroll_offset
        for row_key in keys:
            try:
                index = self.get_row_index(row_key)
            except RowDoesNotExist:
                continue
            region = Region(0, top + index, width, 1)
            if window.overlaps(region):
                self.refresh(region.translate(-offset))

    def _apply_sort(self) -> None:
        if self.sort_column is not None:
            self.sort(self.sort_column, key=lambda text: text.sort_key, reverse=self.sort_reverse)
            return
        if not self._order:
            return
        order = self._order
        self.sort(key=lambda cells: _ordered(order.get(cells[0].row)))

    def sort_label(self, column: str | None = None, reverse: bool | None = None) -> str:
        """What the table is sorted by, in words (``sorted by CPU% ▼``), or "" for the default."""
        column = self.sort_column if column is None else column
        reverse = self.sort_reverse if reverse is None else reverse
        col = next((c for c in self.COLUMNS if c.key == column), None)
        if col is None:
            return ""
        return f"sorted by {col.label} {'▼' if reverse else '▲'}"

    def sort_by(self, column: str | None, reverse: bool = False) -> None:
        """Sort by ``column`` (None: the default order)."""
        self.sort_column, self.sort_reverse = column, reverse
        if self.FIT_COLUMNS:
            self._fit_columns()
        for col in self.COLUMNS:
            label = col.label
            if col.key == column:
                # The arrow must fit the column, or the sort looks like it did nothing.
                arrow = "▼" if reverse else "▲"
                width = self.columns[ColumnKey(col.key)].width if self.FIT_COLUMNS else col.width
                room = (width or len(label) + 1) - 1
                label = (label if len(label) <= room else label[: max(0, room)]) + arrow
            self.columns[ColumnKey(col.key)].label = Text(label)
        self._apply_sort()
        self.refresh()
        self.post_message(self.SortChanged(self, column, reverse))

    def action_cycle_sort(self) -> None:
        """Next sort: each column ascending, then descending, then the next column."""
        keys = [c.key for c in self.COLUMNS]
        if self.sort_column is None:
            self.sort_by(keys[0])
        elif not self.sort_reverse:
            self.sort_by(self.sort_column, reverse=True)
        else:
            index = keys.index(self.sort_column) + 1
            self.sort_by(keys[index] if index < len(keys) else None)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        column = str(event.column_key.value)
        reverse = self.sort_column == column and not self.sort_reverse
        self.sort_by(column, reverse=reverse)

    def row_cells(self, key: str) -> tuple[Cell, ...] | None:
        """What the row ``key`` shows, or None when the table has no such row."""
        return self._cells.get(key)

    @property
    def row_keys(self) -> list[str]:
        """Keys of the rows shown, in display order."""
        return [str(row.key.value) for row in self.ordered_rows]

    @property
    def selected_key(self) -> str | None:
        """Key of the row under the cursor, if any."""
        if self.row_count == 0:
            return None
        try:
            row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:
            return None
        return None if row_key.value is None else str(row_key.value)
