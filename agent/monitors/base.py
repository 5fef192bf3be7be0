"""What every kind of monitor shares: the collector's shape, its errors in words, bounded bodies.

A collector is built once per assignment and kept while the assignment stays the same, so it can
hold what spans collections: the previous counters (rates), an open SSH connection. Its errors
reach the report as ``state: error`` with one line an operator can act on, never a credential.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Iterator

from octotui.protocol.monitors import MonitorAssignment

#: Every body a monitor reads is cut at this size: a page larger than this is an error, not a sample.
MAX_BODY = 4 * 1024 * 1024


class CollectError(Exception):
    """A collection failed; ``str()`` is the report's error (``unreachable: connection refused``, ...)."""


class Collector:
    """One monitor's collections. ``collect`` returns the metrics by name; ``dropped`` counts the
    metrics the source offered beyond those kept; ``version`` is what the target says it runs."""

    def __init__(self, assignment: MonitorAssignment) -> None:
        self.assignment = assignment
        self.dropped = 0
        self.version: str | None = None

    async def collect(self) -> dict[str, float]:
        raise NotImplementedError

    async def reset(self) -> None:
        """Forget connections after a failure or a timeout (the next collection opens new ones)."""

    async def aclose(self) -> None:
        await self.reset()


class Rates:
    """Per-second rates of cumulative counters between two collections (None on the first one and
    after a counter went back: the source restarted)."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, float]] = {}

    def rate(self, key: str, value: float, now: float | None = None) -> float | None:
        now = time.monotonic() if now is None else now
        before = self._last.get(key)
        self._last[key] = (now, value)
        if before is None or value < before[1] or now <= before[0]:
            return None
        return (value - before[1]) / (now - before[0])

    def keep_only(self, keys: set[str]) -> None:
        """Forget series the source no longer shows (bounded memory on churning labels)."""
        for key in self._last.keys() - keys:
            del self._last[key]


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, its causes, and the members of exception groups among them (anyio's "All
    connection attempts failed" holds the refusals in one)."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        cause = current.__cause__ or current.__context__
        if cause is not None:
            pending.append(cause)


def describe(exc: BaseException, timeout: float) -> str:
    """The report's words for a failure to reach a target (the library's exception, wrapped or not)."""
    for item in _chain(exc):
        if isinstance(item, CollectError):
            return str(item)
        if isinstance(item, ConnectionRefusedError):
            return "unreachable: connection refused"
        if isinstance(item, socket.gaierror):
            return f"unreachable: name not resolved ({item.strerror})"
        if isinstance(item, ssl.SSLCertVerificationError):
            return f"tls: certificate not trusted ({item.verify_message})"
        if isinstance(item, ssl.SSLError):
            return f"tls: {item.reason or item}"
        if isinstance(item, TimeoutError):
            return f"timed out after {timeout:g} s"
        if isinstance(item, ConnectionResetError):
            return "unreachable: connection reset"
        if isinstance(item, asyncio.IncompleteReadError):
            return "unreachable: the connection was closed mid-answer"
    for item in _chain(exc):
        if isinstance(item, OSError) and item.strerror:
            return f"unreachable: {item.strerror.lower()}"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


def expect_ok(status: int, reason: str) -> None:
    """A status page or a metrics page answers 200; anything else says why it did not."""
    if status in (401, 403):
        raise CollectError(f"authentication failed (http {status})")
    if status != 200:
        raise CollectError(f"http {status} {reason}".strip())
