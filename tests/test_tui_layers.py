"""The dashboard's layers as README's "Where to add" puts them: screens and widgets never hold the
client; every call to the server goes through ``octotui/tui/actions.py``."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.processes import ROOT

TUI = ROOT / "octotui" / "tui"


def reaches_for_the_client(path: Path) -> list[str]:
    """Where ``path`` touches the client: a ``.client`` attribute, or more than the client's errors imported."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and node.attr == "client":
            found.append(f"{path.name}:{node.lineno} .client")
        if isinstance(node, ast.ImportFrom) and node.module == "octotui.client":
            names = {alias.name for alias in node.names} - {"ClientError", "ServerUnreachable"}
            found += [f"{path.name}:{node.lineno} imports {name}" for name in sorted(names)]
    return found


def test_screens_and_widgets_call_the_server_through_actions_only() -> None:
    modules = sorted([*(TUI / "screens").glob("*.py"), *(TUI / "widgets").glob("*.py")])
    assert len(modules) > 10
    assert [hit for path in modules for hit in reaches_for_the_client(path)] == []
