"""Screenshots of the dashboard, written under screenshots/ when asked for (``OCTOTUI_SCREENSHOTS=1``;
``make screenshots`` asks tests/test_snapshots.py, whose fixture does the same)."""

from __future__ import annotations

import os
from typing import Any

from textual.app import App

from tests.support.processes import ROOT

SHOTS = ROOT / "screenshots"


def save_screenshot(app: App[Any], name: str) -> str:
    """The screen as SVG, written to screenshots/NAME.svg when screenshots are asked for."""
    text = app.export_screenshot(title=f"octotui — {name}")
    assert "<svg" in text
    # Rich writes cell padding as leading no-break spaces; without xml:space="preserve" librsvg
    # drops them, which shifts coloured cells and right-aligned numbers in the PNGs.
    text = text.replace("<svg ", '<svg xml:space="preserve" ', 1)
    if os.environ.get("OCTOTUI_SCREENSHOTS") == "1":
        SHOTS.mkdir(exist_ok=True)
        (SHOTS / f"{name}.svg").write_text(text, encoding="utf-8")
    return text
