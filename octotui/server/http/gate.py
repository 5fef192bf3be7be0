"""The request gate: every API request authenticated and its body bounded before anything parses it."""

from __future__ import annotations

import json
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from octotui.protocol import API_PREFIX
from octotui.server.controller import Controller
from octotui.server.domain import files, jtl
from octotui.server.errors import Unauthorized
from octotui.server.http.errors import status_of

PUBLIC_PATHS = frozenset({f"{API_PREFIX}/health", f"{API_PREFIX}/openapi.json", f"{API_PREFIX}/docs"})
#: Uploads streamed to disk by their route (``routes/jtl.py``, ``routes/files.py``), which counts
#: their bytes itself: they get their own limit and pass unread, chunked or not.
STREAMED = re.compile(rf"^{re.escape(API_PREFIX)}/agents/[^/]+/containers/[^/]+/jtl$")
FILE_UPLOAD = f"{API_PREFIX}/files"


async def _send_error(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class GateMiddleware:
    """Authenticates every API request and bounds body sizes, before any body is parsed.

    So a request without a valid token gets 401 whatever its body, and an oversized body gets 413
    without being read into memory.
    """

    def __init__(
        self, app: ASGIApp, controller: Controller, max_body: int, max_plan: int, max_jtl: int, max_file: int
    ) -> None:
        self.app = app
        self.controller = controller
        self.max_body = max_body
        self.max_plan = max_plan
        self.max_jtl = max_jtl
        self.max_file = max_file

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        path: str = scope["path"]
        if path.startswith(API_PREFIX) and path not in PUBLIC_PATHS:
            auth = headers.get(b"authorization")
            try:
                principal = self.controller.tokens.resolve(auth.decode("latin-1") if auth else None)
            except Unauthorized as exc:
                status, extra = status_of(exc)
                await _send_error(send, status, str(exc), extra)
                return
            scope.setdefault("state", {})["principal"] = principal
        length = headers.get(b"content-length")
        if scope["method"] == "PUT" and STREAMED.match(path):
            await self._streamed(scope, receive, send, length, self.max_jtl, jtl.too_big(self.max_jtl))
            return
        if scope["method"] == "POST" and path == FILE_UPLOAD:
            await self._streamed(scope, receive, send, length, self.max_file, files.too_big(self.max_file))
            return
        too_big = f"request body larger than {self.max_body} bytes (JMX plans: at most {self.max_plan} bytes)"
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _send_error(send, 400, "invalid Content-Length header")
                return
            if declared > self.max_body:
                await _send_error(send, 413, too_big)
                return
            await self.app(scope, receive, send)
            return
        if headers.get(b"transfer-encoding", b"").lower() != b"chunked":
            await self.app(scope, receive, send)
            return
        # Chunked body: read it here, bounded, then replay it to the app.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, receive, send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await _send_error(send, 413, too_big)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _streamed(
        self, scope: Scope, receive: Receive, send: Send, length: bytes | None, limit: int, too_big: str
    ) -> None:
        """An upload streamed by its route: refused here only when its declared size is too large."""
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _send_error(send, 400, "invalid Content-Length header")
                return
            if declared > limit:
                await _send_error(send, 413, too_big)
                return
        await self.app(scope, receive, send)
