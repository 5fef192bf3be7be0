"""octotui: run Apache JMeter load generators on your own machines, from the terminal."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from octotui.protocol import VERSION as __version__

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    """``__version__`` on first use only: it lives in the wire contract, whose pydantic models take
    ~150 ms to import, more than half of what ``octotui agents --json`` may take (DESIGN.md, < 0.3 s).
    Importing any ``octotui.*`` module imports this package first, so it must import nothing."""
    if name == "__version__":
        from octotui.protocol import VERSION

        return VERSION
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
