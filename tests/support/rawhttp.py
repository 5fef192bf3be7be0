"""Two real servers' worth of raw HTTP: the app behind uvicorn on a loopback port (``serving``),
requests written by hand on raw sockets (``request``, ``exchange``) and answers made comparable
(``Side.canonical``), as the fast-path parity tests need them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import uvicorn
from fastapi import FastAPI

from octotui.server.app import create_app
from octotui.server.settings import ServerSettings

ADMIN = "fastpath-admin"
MAX_BODY = 20_000
PLAN = (
    '<?xml version="1.0"?><jmeterTestPlan version="1.2"><hashTree><TestPlan testname="t"/></hashTree></jmeterTestPlan>'
)
#: Ids the controller draws (``a-``, ``p-``, ``t-``, ``c-``, ``m-`` and 12 hex digits).
DRAWN_ID = re.compile(rb"\b[a-z]+-[0-9a-f]{12}\b")


@dataclass
class Side:
    """One server on loopback and the world built in it."""

    app: FastAPI
    port: int
    tokens: dict[str, str | None] = field(default_factory=dict)
    #: Placeholder -> the id this server drew for it.
    ids: dict[str, str] = field(default_factory=dict)

    @property
    def fast(self) -> tuple[int, int]:
        """(answered, passed on) by the fast path; (0, 0) without one."""
        path = getattr(self.app.state, "fast_path", None)
        return (path.answered, path.passed_on) if path is not None else (0, 0)

    def fill(self, text: str) -> str:
        """``text`` with ``{NAME}`` replaced by the id drawn for NAME (``{%NAME}``: percent-encoded)."""
        for name, real in self.ids.items():
            text = text.replace("{" + name + "}", real).replace("{%" + name + "}", quote(real, safe=""))
        return text

    def canonical(self, raw: bytes) -> bytes:
        """The answer with its Date header dropped and every drawn id named by role or by order."""
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"date:")]
        text = b"\r\n".join(lines) + b"\r\n\r\n" + body
        for name, real in self.ids.items():
            text = text.replace(real.encode(), f"<{name}>".encode())
        seen: dict[bytes, bytes] = {}
        return DRAWN_ID.sub(lambda m: seen.setdefault(m.group(0), b"<id%d>" % len(seen)), text)


def _settings(data_dir: Path) -> ServerSettings:
    return ServerSettings(
        data_dir=data_dir, admin_token=ADMIN, heartbeat_interval=5.0, late_after=60.0, offline_after=120.0,
        poll_timeout_min=0.1, poll_timeout_max=0.2, redeliver_after=60.0, flush_interval=0.05,
        max_body_bytes=MAX_BODY, max_plan_bytes=10_000,
    )  # fmt: skip


@contextlib.asynccontextmanager
async def serving(data_dir: Path, fast: bool) -> AsyncIterator[Side]:
    """The real app behind uvicorn on a loopback port, in this event loop."""
    app = create_app(_settings(data_dir), fast_path=fast)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, log_config=None, timeout_graceful_shutdown=2)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):  # up to 10 s
            if server.started or task.done():
                break
            await asyncio.sleep(0.02)
        assert server.started, "uvicorn did not start"
        yield Side(app, sock.getsockname()[1])
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 20)
        sock.close()


def request(
    side: Side,
    method: str,
    path: str,
    token: str | None = "agent",
    body: bytes = b"",
    content_type: str | None = "application/json",
    headers: tuple[str, ...] = (),
    chunked: bool = False,
) -> bytes:
    """An HTTP/1.1 request written by hand; ``token`` names one of the side's tokens."""
    lines = [f"{method} {side.fill(path)} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    secret = side.tokens.get(token) if token else None
    if secret is not None:
        lines.append(f"Authorization: Bearer {secret}")
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    lines += [side.fill(h) for h in headers]
    payload = side.fill(body.decode("latin-1")).encode("latin-1")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        step = 1000
        parts = [payload[i : i + step] for i in range(0, len(payload), step)]
        payload = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    elif (method in ("POST", "PUT", "PATCH") or payload) and not any(
        h.lower().startswith("content-length:") for h in headers
    ):
        lines.append(f"Content-Length: {len(payload)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


async def exchange(port: int, raw: bytes) -> bytes:
    """Send ``raw`` on a new connection and read the whole answer (the server closes it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 15)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def host(ts: float = 1_700_000_000.0) -> dict[str, Any]:
    return {"ts": ts, "cpu_percent": 12.5, "cpu_per_core": [10.0, 15.0], "memory_percent": 40.0,
            "memory_total": 8 * 1024**3, "memory_used": 3 * 1024**3}  # fmt: skip


def beat(**extra: Any) -> bytes:
    body = {"host": host(), "samples": [host(1_699_999_999.0)], "docker": {"available": True, "version": "20.10"}}
    return json.dumps({**body, **extra}).encode()


def as_kind(side: Side, kind: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {side.tokens[kind]}", "Content-Type": "application/json"}
