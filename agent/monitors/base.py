"""What every kind of monitor shares: the collector's shape, its errors in words, bounded bodies.

A collector is built once per assignment and kept while the assignment stays the same, so it can
hold what spans collections: the previous counters (rates), an open SSH connection. Its errors
reach the report as ``state: error`` with one line an operator can act on, never a credential.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from octotui.protocol.monitors import MonitorAssignment

if TYPE_CHECKING:
    import httpx

#: Every body a monitor reads is cut at this size: a page larger than this is an error, not a sample.
MAX_BODY = 4 * 1024 * 1024


class CollectError(Exception):
    """A collection failed; ``str()`` is the report's error (``unreachable: connection refused``, ...)."""


class Collector:
    """One monitor's collections. ``collect`` returns the metrics by name; ``dropped`` counts the
    metrics the source offered beyond those kept; ``version`` is what the target says it runs."""

    def __init__(self, assignment: MonitorAssignment, http: HttpClients) -> None:
        self.assignment = assignment
        self.http = http
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
    for item in _chain(exc):
        if isinstance(item, OSError) and item.strerror:
            return f"unreachable: {item.strerror.lower()}"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


async def read_bounded(response: httpx.Response, limit: int = MAX_BODY) -> bytes:
    """The body of a streamed response, or ``too large`` as soon as it passes ``limit`` bytes."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise CollectError(f"too large: over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():  # identity encoding asked: no decompression bomb
        size += len(chunk)
        if size > limit:
            raise CollectError(f"too large: over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def peer_certificate_days(response: httpx.Response) -> float | None:
    """Days until the server's certificate expires, for an https response (None otherwise)."""
    stream = response.extensions.get("network_stream")
    ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    return (cert.not_valid_after_utc.timestamp() - time.time()) / 86400


class HttpClients:
    """The agent's HTTP clients for monitors, shared by every monitor (one pool of connections),
    built when the first HTTP monitor runs. No proxy from the environment: the targets are inside
    the agent's network, the proxy (if any) is for reaching the control server."""

    def __init__(self) -> None:
        self._clients: dict[bool, httpx.AsyncClient] = {}

    def get(self, insecure: bool) -> httpx.AsyncClient:
        client = self._clients.get(insecure)
        if client is None:
            import httpx

            from octotui.protocol import VERSION

            client = self._clients[insecure] = httpx.AsyncClient(
                verify=not insecure,
                trust_env=False,
                follow_redirects=False,
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=64),
                headers={"User-Agent": f"octotui-agent/{VERSION} (monitor)", "Accept-Encoding": "identity"},
            )
        return client

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()


@dataclass
class Page:
    status: int
    reason: str
    body: bytes
    latency_ms: float
    cert_days: float | None
    content_type: str


async def fetch(http: HttpClients, assignment: MonitorAssignment, accept: str | None = None) -> Page:
    """GET the assignment's URL (basic auth from its credentials), its body bounded by :data:`MAX_BODY`."""
    url = target_url(assignment)
    creds = assignment.credentials
    auth = (creds.username or "", creds.password or "") if creds and creds.password is not None else None
    headers = {"Accept": accept} if accept else {}
    started = time.perf_counter()
    async with http.get(assignment.insecure).stream(
        "GET", url, headers=headers, auth=auth, timeout=assignment.timeout
    ) as response:
        body = await read_bounded(response)
        return Page(response.status_code, response.reason_phrase, body, (time.perf_counter() - started) * 1000,
                    peer_certificate_days(response), response.headers.get("content-type", ""))  # fmt: skip


def expect_ok(page: Page) -> None:
    if page.status == 401 or page.status == 403:
        raise CollectError(f"authentication failed (http {page.status})")
    if page.status != 200:
        raise CollectError(f"http {page.status} {page.reason}".strip())


def target_url(assignment: MonitorAssignment) -> str:
    url = assignment.target.strip()
    if not url.startswith(("http://", "https://")):
        raise CollectError("bad target: a URL starting with http:// or https:// is expected")
    return url
