"""What the subcommands print: one JSON document of contract models (``--json``), or plain tables
that fit 80 columns, and the few number formats they share. No Rich, no Textual: a one-shot
command must start fast."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:  # pydantic's import is ~35 ms that ``--json`` listings do without (rawjson.py)
    from pydantic import BaseModel

WIDTH = 80  # the narrowest terminal a table must fit (an ssh session at 80x24)


def print_json(value: BaseModel | Sequence[BaseModel], out: TextIO | None = None) -> None:
    """One JSON document: a model, or an array of models, every field present (defaults too), so a
    script reads the same keys whatever the values."""
    if isinstance(value, Sequence):
        doc: object = [m.model_dump(mode="json") for m in value]
    else:
        doc = value.model_dump(mode="json")
    print(json.dumps(doc, indent=2, ensure_ascii=False), file=out or sys.stdout)


def width(stream: TextIO | None = None) -> int:
    """Columns to fit: the terminal's when it is wider than 80, else 80 (also when not a terminal)."""
    stream = stream or sys.stdout
    if stream.isatty():
        return max(WIDTH, shutil.get_terminal_size((WIDTH, 24)).columns)
    return WIDTH


def clip(text: str, size: int) -> str:
    """``text`` in at most ``size`` characters, with an ellipsis where it was cut."""
    if len(text) <= size:
        return text
    return text[: max(0, size - 1)] + "…" if size > 0 else ""


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    right: Iterable[int] = (),
    flex: Sequence[int] = (),
    limit: int = WIDTH,
    out: TextIO | None = None,
) -> None:
    """Print ``rows`` under ``headers`` in columns two spaces apart, numbers (``right``) aligned
    right. When the table is wider than ``limit``, the ``flex`` columns (names, messages) are cut,
    the widest first, down to 6 characters each."""
    body = [list(r) for r in rows]
    sizes = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(headers)]
    over = sum(sizes) + 2 * (len(sizes) - 1) - limit
    while over > 0:
        cuttable = [i for i in flex if sizes[i] > 6]
        if not cuttable:
            break
        sizes[max(cuttable, key=lambda i: sizes[i])] -= 1
        over -= 1
    right = set(right)
    stream = out or sys.stdout
    for cells in [list(headers), *body]:
        parts = []
        for i, cell in enumerate(cells):
            text = clip(cell, sizes[i])
            parts.append(text.rjust(sizes[i]) if i in right else text.ljust(sizes[i]))
        print("  ".join(parts).rstrip(), file=stream)


def plural(n: int, word: str) -> str:
    """``1 container``, ``2 containers``."""
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def count(value: int) -> str:
    return f"{value:,}"


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def rate(value: float) -> str:
    return f"{value:,.1f}"


def percent(value: float) -> str:
    return f"{value:.2f}"


def when(moment: datetime | None, *, short: bool = False) -> str:
    """A date and time in local time ("-" when unknown); ``short``: without the year and seconds."""
    if moment is None:
        return "-"
    return moment.astimezone().strftime("%m-%d %H:%M" if short else "%Y-%m-%d %H:%M:%S")


def span(seconds: float) -> str:
    """``1h02m``, ``3m05s``, ``42s``."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"
