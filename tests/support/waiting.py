"""Bounded waits: one for sync code, one for coroutines, one for a Textual Pilot. Never a bare sleep.

``timeout`` is a polling deadline that fails the test with ``what``, not a cancellation scope (hence
no ``asyncio.timeout``, which ruff's ASYNC109 would suggest).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from textual.pilot import Pilot


def wait_until(
    predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1, what: str = "condition"
) -> Any:
    """Poll ``predicate`` until it returns something truthy, and return that; an exception it raises
    counts as "not yet". Bounded: fails after ``timeout`` with ``what`` and the last error."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception as exc:
            last_exc = exc
        else:
            if value:
                return value
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout} s waiting for {what}" + (f" (last error: {last_exc})" if last_exc else "")
    )


async def wait_until_async(
    predicate: Callable[[], Awaitable[Any]],
    timeout: float = 20.0,  # noqa: ASYNC109
    interval: float = 0.1,
    what: str = "condition",
) -> Any:
    """Await ``predicate()`` until it is truthy, and return that; bounded, fails with ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def wait_until_pilot(
    pilot: Pilot[Any],
    predicate: Callable[[], object],
    timeout: float = 30.0,  # noqa: ASYNC109
    what: str = "",
) -> None:
    """Let the app run until ``predicate()`` is truthy; bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
