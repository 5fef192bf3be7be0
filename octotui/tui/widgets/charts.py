"""Charts drawn in one colour (a gradient costs most of a live dashboard's terminal output)."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from typing import ClassVar

from rich.text import Text
from textual.geometry import Size
from textual.reactive import reactive
from textual.widget import Widget

from octotui.tui import format as fmt

_BLOCKS = " ▁▂▃▄▅▆▇█"
WAITING = "waiting for data"


class Chart(Widget):
    """A title line (latest value and the window's maximum), then vertical bars over a scale.

    One column per value, newest on the right; ``ceiling`` fixes the scale (100 for
    percentages), else the visible maximum sets it. The left gutter shows the scale's top and 0.
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {"chart--bar", "chart--title", "chart--value", "chart--axis"}
    values: reactive[tuple[float, ...]] = reactive(tuple, layout=False)
    #: What the chart says while it has no values (e.g. why none will come).
    empty: reactive[str] = reactive(lambda: WAITING, layout=False)

    def __init__(
        self,
        title: str,
        *,
        ceiling: float | None = None,
        formatter: Callable[[float], str] = fmt.percent,
        unit: str = "",
        latest: str = "",
        peak: str = "max",
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.title = title
        self.ceiling = ceiling
        self.formatter = formatter
        self.unit = unit
        #: Words before the latest value and the window's maximum in the title line (e.g. "now",
        #: "peak"), so that they read apart from a whole-run figure shown elsewhere.
        self.latest = latest
        self.peak = peak

    def render(self) -> Text:
        rows = max(1, self.size.height - 1)
        values = self.values
        # The scale, its label and the title's maximum all come from the visible window.
        provisional = f"{self.ceiling:g}" if self.ceiling else self.formatter(max(values) if values else 0.0)
        gutter = len(provisional) + 1
        width = max(1, self.size.width - gutter)
        data: Sequence[float] = values[-width:]
        top = self.ceiling or (max(data) if data else 0.0) or 1.0
        top_label = f"{top:g}" if self.ceiling else self.formatter(top)
        if len(top_label) + 1 > gutter:
            gutter = len(top_label) + 1
            width = max(1, self.size.width - gutter)
            data = data[-width:]
        top_label = top_label.rjust(gutter - 1)
        title_style = self.get_component_rich_style("chart--title")
        value_style = self.get_component_rich_style("chart--value")
        bar_style = self.get_component_rich_style("chart--bar")
        axis_style = self.get_component_rich_style("chart--axis")
        text = Text(no_wrap=True, overflow="crop")
        text.append(self.title, title_style)
        if data:
            if self.latest:
                text.append(f" {self.latest}", title_style)
            text.append(f" {self.formatter(data[-1])}{self.unit}", value_style)
            peak = f"  ({self.peak} {self.formatter(max(data))})"
            if text.cell_len + len(peak) <= self.size.width:  # a narrow chart keeps its title on one line
                text.append(peak, title_style)
        elif self.empty == WAITING:
            text.append(f"  {WAITING}", title_style)
        notice = [] if data or self.empty == WAITING else textwrap.wrap(self.empty, width) or [""]
        levels = [min(max(v / top, 0.0), 1.0) * rows * 8 for v in data]
        pad = " " * (width - len(data))
        for row in range(rows - 1, -1, -1):
            if row == rows - 1:
                label = top_label + "┤"
            elif row == 0:
                label = "0".rjust(gutter - 1) + "┤"
            else:
                label = " " * (gutter - 1) + "│"
            text.append("\n" + label, axis_style)
            line_no = rows - 1 - row
            if notice:
                text.append(notice[line_no] if line_no < len(notice) else "", title_style)
                continue
            line = "".join(_BLOCKS[min(max(round(level - row * 8), 0), 8)] for level in levels)
            text.append(pad + line, bar_style)
        return text


class CoreBars(Widget):
    """One horizontal bar per CPU core, laid out in as many columns as fit."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"corebars--bar", "corebars--label"}
    cores: reactive[tuple[float, ...]] = reactive(tuple, layout=False)
    MAX_LINES: ClassVar[int] = 6

    def watch_cores(self, old: tuple[float, ...], new: tuple[float, ...]) -> None:
        if len(old) != len(new):
            self.refresh(layout=True)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return max(1, min(len(self.cores), self.MAX_LINES))

    def render(self) -> Text:
        cores = self.cores
        text = Text(no_wrap=True, overflow="crop")
        if not cores:
            return text.append("per-core: waiting for data", self.get_component_rich_style("corebars--label"))
        height = min(len(cores), self.MAX_LINES)
        columns = -(-len(cores) // height)
        cell = max(12, self.size.width // columns)
        bar_width = max(3, cell - 10)
        label, bar = self.get_component_rich_style("corebars--label"), self.get_component_rich_style("corebars--bar")
        lines = min(height, len(cores))
        for line in range(lines):
            if line:
                text.append("\n")
            for col in range(columns):
                index = col * lines + line
                if index >= len(cores):
                    break
                value = cores[index]
                text.append(f"{index:>3} ", label)
                text.append(fmt.bar(value / 100, bar_width), bar)
                text.append(f"{value:4.0f}% ".ljust(cell - bar_width - 4), label)
        return text
