"""Plain values the app holds in reactives (new objects on every change, never mutated)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from octotui.protocol import ErrorFigures, LabelFigures


@dataclass(frozen=True)
class Connection:
    """What the dashboard knows of its link to the server."""

    state: Literal["connecting", "ok", "unreachable", "refused"] = "connecting"
    message: str = ""
    last_update: float = 0.0  # unix time of the last successful poll round
    retry_at: float = 0.0  # unix time of the next attempt while failing
    refresh: float = 1.0
    #: What went wrong besides the link itself (the embedded server exited, the token was
    #: refused): shown instead of the retry countdown.
    note: str = ""


@dataclass(frozen=True)
class TestLabels:
    """The open test's figures per label and its errors (None: the server keeps none)."""

    __test__ = False
    test_id: str
    labels: list[LabelFigures] | None = None
    errors: list[ErrorFigures] | None = None
