"""The help dialog names the keys the code binds that are shown nowhere else (kept out of the
footer): the command line, marking rows and what is done to marked rows. Read from the bindings
themselves, so a key rebound without its help line fails here. (That it fits 80x24 is
tests/test_tui_forms.py::test_help_reads_in_two_columns_at_80x24.)"""

from __future__ import annotations

import pytest
from rich.text import Text
from textual.binding import Binding
from textual.dom import DOMNode

from octotui.tui.app import OctoApp
from octotui.tui.screens.help import HELP
from octotui.tui.widgets.keyed_table import KeyedTable
from octotui.tui.widgets.tables import AgentsTable, ContainerMarks

LINES = [Text.from_markup(line).plain for line in HELP.splitlines()]

KEYS = [
    (OctoApp, "colon", "command line"),
    (KeyedTable, "space", "mark a row"),
    (AgentsTable, "D", "drain"),
    (AgentsTable, "U", "undrain"),
    (ContainerMarks, "X", "stop the marked containers"),
]


@pytest.mark.parametrize(("owner", "key", "words"), KEYS, ids=[k[1] for k in KEYS])
def test_help_names_each_hidden_key(owner: type[DOMNode], key: str, words: str) -> None:
    bound = [b for b in owner.BINDINGS if isinstance(b, Binding) and key in b.key.split(",")]
    assert bound, f"{owner.__name__} binds no {key!r}"
    shown = bound[0].key_display or key
    assert any(f" {shown} " in f" {line} " and words in line for line in LINES), (shown, words)


def test_help_names_the_monitors_screen_and_its_command() -> None:
    assert any(line.startswith("Monitors (:monitors)") for line in LINES)
