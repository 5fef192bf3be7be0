"""KeyedTable on a real Textual app: one changed row repaints that row only, orders hold, and the two
private DataTable internals it relies on (no public API does the same) are still what it expects."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import App, ComposeResult
from textual.geometry import Region
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey

from octotui.tui.widgets.keyed_table import Cell, Column, KeyedTable, fit_widths

SIZE = (60, 20)
ROWS = 300


class Table(KeyedTable):
    COLUMNS: ClassVar = (
        Column("name", "Name", 8),
        Column("cpu", "CPU%", 6, "right"),
        Column("info", "Info", 10, stretch=True),
    )


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield Table(id="t")


def rows(cpu: dict[str, str] | None = None) -> dict[str, list[Cell]]:
    cpu = cpu or {}
    return {
        f"r{i:03}": [Cell(f"r{i:03}"), Cell(cpu.get(f"r{i:03}", str(i % 7)), sort=i % 7), Cell("i" * 90)]
        for i in range(ROWS)
    }


def line(table: KeyedTable, y: int) -> str:
    return table.render_line(y).text


async def test_a_changed_cell_repaints_its_row_only() -> None:
    app = TableApp()
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(Table)
        table.sync(rows())
        await pilot.pause()
        assert "r003" in line(table, 4)  # line 0 is the header
        calls: list[tuple[Any, ...]] = []
        real = table.refresh

        def spy(*regions: Any, **kwargs: Any) -> Any:
            calls.append(regions)
            return real(*regions, **kwargs)

        table.refresh = spy  # type: ignore[method-assign]
        table.sync(rows({"r003": "99.5", "r250": "88.5"}))
        # r003 repainted as one line at its place; r250 is out of sight: nothing; never the whole table
        assert calls == [(Region(0, 4, max(SIZE[0], table.virtual_size.width), 1),)], calls
        await pilot.pause()
        assert "99.5" in line(table, 4), line(table, 4)
        table.refresh = real  # type: ignore[method-assign]
        table.move_cursor(row=table.get_row_index("r250"), animate=False)
        await pilot.pause()
        assert any("88.5" in line(table, y) for y in range(1, SIZE[1])), "a row changed out of sight shows when seen"


async def test_default_order_column_sort_and_back() -> None:
    app = TableApp()
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(Table)
        data = dict(list(rows().items())[:6])
        table.sync(data, order={k: -i for i, k in enumerate(data)})
        await pilot.pause()
        assert table.row_keys == list(reversed(data))
        table.sync(data, order={k: i for i, k in enumerate(data)})
        assert table.row_keys == list(data), "a new default order applies at once"
        table.sort_by("cpu", reverse=True)
        assert [table.row_cells(k)[1].text for k in table.row_keys] == ["5", "4", "3", "2", "1", "0"]  # type: ignore[index]
        table.sort_by(None)
        assert table.row_keys == list(data)
        # a row whose sort column changes moves
        table.sort_by("cpu")
        changed = dict(data)
        changed["r000"] = [Cell("r000"), Cell("9", sort=9), Cell("x")]
        table.sync(changed)
        assert table.row_keys[-1] == "r000"


async def test_the_stretching_column_takes_the_width_left() -> None:
    app = TableApp()
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(Table)
        table.sync(rows())
        await pilot.pause()
        info = table.columns[ColumnKey("info")]
        narrow, shown = info.width, line(table, 1).count("i")
        await pilot.resize_terminal(100, 20)
        await pilot.pause()
        assert info.width == narrow + 40
        assert table.virtual_size.width == sum(c.get_render_width(table) for c in table.columns.values())
        assert line(table, 1).count("i") == shown + 40, "rows are drawn again at the new width"


async def test_datatable_internals_keyed_table_relies_on() -> None:
    """Fails when a Textual release changes the internals used by keyed_table._put_cells and
    _columns_resized: read keyed_table.py's note, find the new way, then widen textual's bound."""

    class Plain(App[None]):
        def compose(self) -> ComposeResult:
            yield DataTable()

    async with Plain().run_test(size=SIZE) as pilot:
        table = pilot.app.query_one(DataTable)
        table.add_column("A", key="a", width=6)
        table.add_row("one", key="r")
        await pilot.pause()
        data, count = getattr(table, "_data", None), getattr(table, "_update_count", None)
        assert isinstance(data, dict) and isinstance(count, int), "DataTable keeps its cells elsewhere now"
        assert data[RowKey("r")][ColumnKey("a")] == "one", "DataTable._data is no longer row key -> column key -> cell"
        assert "one" in table.render_line(1).text
        data[RowKey("r")][ColumnKey("a")] = "two"
        table._update_count = count + 1
        table.refresh()
        assert "two" in table.render_line(1).text, "DataTable's render caches no longer follow _update_count"
        assert isinstance(getattr(table, "_require_update_dimensions", None), bool)
        assert callable(getattr(table, "_clear_caches", None))


def test_fitted_columns_give_way_widest_first_and_the_stretching_one_last() -> None:
    columns = (
        Column("name", "Name", 6, max_width=16),
        Column("target", "Target", 8, max_width=28),
        Column("state", "State", 8, max_width=32),
        Column("values", "Last values", 11, stretch=True),
    )
    longest = {"name": 4, "target": 26, "state": 31, "values": 18}
    # Room for all: each its text (name its floor), the stretching one what is left.
    assert fit_widths(columns, longest, 100) == {"name": 6, "target": 26, "state": 31, "values": 37}
    # 20 short: the state gives way to the target's width, then both a cell at a time; values whole.
    assert fit_widths(columns, longest, 61) == {"name": 6, "target": 18, "state": 19, "values": 18}
    # Narrower than every floor: the others at theirs, then the stretching one down to its own.
    assert fit_widths(columns, longest, 30) == {"name": 6, "target": 8, "state": 8, "values": 11}


class Fitted(KeyedTable):
    FIT_COLUMNS: ClassVar = True
    COLUMNS: ClassVar = (
        Column("name", "Name", 4, max_width=12),
        Column("target", "Target", 6, max_width=40),
        Column("values", "Last values", 11, stretch=True),
    )


class FittedApp(App[None]):
    def compose(self) -> ComposeResult:
        yield Fitted(id="t")


async def test_fitted_columns_follow_their_text_and_keep_the_sort_arrow() -> None:
    app = FittedApp()
    async with app.run_test(size=(40, 8)) as pilot:
        table = app.query_one(Fitted)
        table.sync({"a": [Cell("web"), Cell("http://127.0.0.1:7/health"), Cell("up=1  load=7")]})
        await pilot.pause()
        header, row = line(table, 0).rstrip(), line(table, 1).rstrip()
        # 40 columns: the target gives way, the name and the last values stay whole.
        assert header.endswith("Last values") and row.endswith("up=1  load=7") and " web " in row, (header, row)
        table.sort_by("values")
        await pilot.pause()
        assert line(table, 0).rstrip().endswith("Last values▲"), line(table, 0)
