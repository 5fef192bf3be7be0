"""Charts drawn in one colour (a gradient costs most of a live dashboard's terminal output).

Bars are drawn in eighth blocks (``▁▂▃▄▅▆▇█``: eight levels per cell, as btop draws), and a chart
given the times of its values keeps the whole run: past one column per value, each column is a
bucket of values (their mean, or their maximum), and an elapsed-time axis (``0:00 … m:ss``) runs
under the bars. The drawing is plain functions of the values, tested without Textual.
"""

from __future__ import annotations

import bisect
import math
import textwrap
from collections.abc import Callable, Sequence
from typing import ClassVar, Literal

from rich.text import Text
from textual.geometry import Size
from textual.reactive import reactive
from textual.widget import Widget

from octotui.tui import format as fmt

_BLOCKS = " ▁▂▃▄▅▆▇█"
WAITING = "waiting for data"
#: The axis' steps between two time labels, in seconds: the first that leaves room between labels.
AXIS_STEPS = (5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
#: How the values of one column are made one, once a run has more values than columns.
Reduce = Literal["mean", "max"]


def elapsed(seconds: float) -> str:
    """Elapsed time on an axis: ``0:00``, ``4:05``, ``1:02:03``."""
    s = max(0, int(seconds))
    if s < 3600:
        return f"{s // 60}:{s % 60:02d}"
    return f"{s // 3600}:{(s % 3600) // 60:02d}:{s % 60:02d}"


def columns(
    values: Sequence[float], times: Sequence[float], width: int, how: Reduce = "mean"
) -> tuple[list[float], list[float]]:
    """The whole run in at most ``width`` columns: each column a bucket of ``k`` consecutive values
    (``k`` the smallest that fits), and the time of its first value. Buckets start at the first
    value, so that a growing run changes only its last column until ``k`` grows."""
    n = min(len(values), len(times))
    if n == 0 or width < 1:
        return [], []
    k = max(1, math.ceil(n / width))
    data: list[float] = []
    at: list[float] = []
    for start in range(0, n, k):
        bucket = values[start : min(start + k, n)]
        data.append(max(bucket) if how == "max" else sum(bucket) / len(bucket))
        at.append(times[start])
    return data, at


def bar_lines(data: Sequence[float], top: float, rows: int) -> list[str]:
    """Vertical bars of ``data`` scaled to ``top`` over ``rows`` lines (top line first), in eighth
    blocks; a value above zero shows at least one eighth, so that a lone error is seen."""
    levels = []
    for v in data:
        level = min(max(v / top, 0.0), 1.0) * rows * 8 if top > 0 else 0.0
        levels.append(max(level, 1.0) if v > 0 else level)
    return [
        "".join(_BLOCKS[min(max(round(level - row * 8), 0), 8)] for level in levels) for row in range(rows - 1, -1, -1)
    ]


def time_axis(at: Sequence[float], width: int) -> str:
    """A line of ``width`` cells with elapsed-time labels (``0:00``, ``0:30``, …) each starting at the
    column its time falls in; ``at``: each column's time in seconds since the start, ascending."""
    line = [" "] * width
    if not at or width < 4:
        return "".join(line)
    first, last = at[0], at[-1]
    room = len(elapsed(last)) + 3
    span = max(last - first, 1e-9)
    per_second = len(at) / span if last > first else float(len(at))
    step = next((s for s in AXIS_STEPS if s * per_second >= room), AXIS_STEPS[-1])
    # The first column always says when it starts; then a label at every step that has room.
    start = elapsed(first)
    line[: len(start)] = start
    tick = math.floor(first / step + 1e-9) * step + step
    while tick <= last + 1e-9:
        col = bisect.bisect_left(at, tick - 1e-9)
        label = elapsed(tick)
        end = col + len(label)
        if end <= width and all(c == " " for c in line[max(0, col - 2) : end + 1]):
            line[col:end] = label
        tick += step
    return "".join(line)


class Chart(Widget):
    """A title line (latest value and the peak), then vertical bars over a scale.

    Without ``times``, one column per value, newest on the right (a live window). With ``times``
    (seconds since the start, one per value) the whole run, from the left, with an elapsed-time
    axis under it. ``ceiling`` fixes the scale (100 for percentages), else the highest column sets
    it. The left gutter shows the scale's top and 0. ``live`` False: the run has ended, so the
    latest value ("now") reads "-" while the bars keep the run.
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {"chart--bar", "chart--title", "chart--value", "chart--axis"}
    values: reactive[tuple[float, ...]] = reactive(tuple, layout=False)
    #: Seconds since the run's start of each value (empty: a live window without an axis).
    times: reactive[tuple[float, ...]] = reactive(tuple, layout=False)
    #: False once what the chart shows has ended: its "now" has no value.
    live: reactive[bool] = reactive(True, layout=False)
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
        reduce: Reduce = "mean",
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
        #: How a column of many values is drawn: their mean (rates, times) or maximum (spikes).
        self.reduce: Reduce = reduce

    def render(self) -> Text:
        return self.draw(self.size.width, self.size.height)

    def draw(self, width_cells: int, height: int) -> Text:
        """The chart in ``width_cells`` x ``height`` cells."""
        values, times = self.values, self.times
        timed = bool(times) and len(times) == len(values)
        rows = max(1, height - 1)
        axis = timed and rows >= 3
        if axis:
            rows -= 1
        peak_value = max(values) if values else 0.0
        provisional = f"{self.ceiling:g}" if self.ceiling else self.formatter(peak_value)
        gutter = len(provisional) + 1
        width = max(1, width_cells - gutter)
        at: list[float] = []
        if timed:
            data, at = columns(values, times, width, self.reduce)
        else:
            data = list(values[-width:])
        top = self.ceiling or (max(data) if data else 0.0) or 1.0
        top_label = f"{top:g}" if self.ceiling else self.formatter(top)
        if len(top_label) + 1 > gutter:
            gutter = len(top_label) + 1
            width = max(1, width_cells - gutter)
            data, at = columns(values, times, width, self.reduce) if timed else (list(values[-width:]), [])
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
            now = f"{self.formatter(values[-1])}{self.unit}" if self.live else "-"
            text.append(f" {now}", value_style)
            shown = peak_value if timed else max(data)
            peak = f"  ({self.peak} {self.formatter(shown)})"
            if text.cell_len + len(peak) <= width_cells:  # a narrow chart keeps its title on one line
                text.append(peak, title_style)
        elif self.empty == WAITING:
            text.append(f"  {WAITING}", title_style)
        notice = [] if data or self.empty == WAITING else textwrap.wrap(self.empty, width) or [""]
        lines = bar_lines(data, top, rows)
        for line_no, line in enumerate(lines):
            row = rows - 1 - line_no
            if row == rows - 1:
                label = top_label + "┤"
            elif row == 0:
                label = "0".rjust(gutter - 1) + "┤"
            else:
                label = " " * (gutter - 1) + "│"
            text.append("\n" + label, axis_style)
            if notice:
                text.append(notice[line_no] if line_no < len(notice) else "", title_style)
                continue
            if timed:
                text.append(line, bar_style)
            else:
                text.append(" " * (width - len(data)) + line, bar_style)
        if axis:
            text.append("\n" + " " * (gutter - 1) + "└" + (time_axis(at, width) if data else ""), axis_style)
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
