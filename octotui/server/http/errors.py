"""Errors as HTTP answers: the domain's errors mapped to status codes in one table, the store's
refusals, FastAPI's own validation and parsing errors in the server's words."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from octotui.protocol import ErrorBody
from octotui.server.errors import (
    Conflict,
    DomainError,
    Forbidden,
    Gone,
    Invalid,
    NoSpace,
    NotFound,
    TooLarge,
    Unauthorized,
    Unstorable,
)

log = logging.getLogger("octotui.server")

#: Every refusal answers ``{"detail": ...}``; documented so that clients (and schemathesis) know.
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "bad request (e.g. an invalid Content-Length)"},
    401: {"model": ErrorBody, "description": "missing, malformed, invalid or revoked token"},
    403: {"model": ErrorBody, "description": "this token's role may not use this route"},
    404: {"model": ErrorBody, "description": "unknown id"},
    409: {"model": ErrorBody, "description": "conflicts with the current state (name taken, busy, no room)"},
    413: {"model": ErrorBody, "description": "request body or plan over the limit (see ServerInfo.max_plan_bytes)"},
    422: {"model": ErrorBody, "description": "malformed JSON, wrong types or values, invalid plan"},
}


#: Domain errors (``octotui/server/errors.py``) and their status codes: the one place they meet HTTP.
#: First match wins.
DOMAIN_STATUS: tuple[tuple[type[DomainError], int], ...] = (
    (NotFound, 404),
    (Conflict, 409),
    (Invalid, 422),
    (TooLarge, 413),
    (Unauthorized, 401),
    (Forbidden, 403),
    (Gone, 410),
    (NoSpace, 507),
)


def status_of(exc: DomainError) -> tuple[int, dict[str, str] | None]:
    """The status code of a domain error (:data:`DOMAIN_STATUS`) and the headers its answer carries."""
    status = next((code for kind, code in DOMAIN_STATUS if isinstance(exc, kind)), 400)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) and exc.challenge else None
    return status, headers


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    if isinstance(exc, Unstorable):
        log.error("%s %s: %s", request.method, request.url.path, exc)
    status, headers = status_of(exc)
    return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    """FastAPI's answer, but a body that is not UTF-8 says so (FastAPI: "There was an error parsing the body")."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
        bad = exc.__cause__
        detail = f"the body is not valid UTF-8 JSON (byte {bad.start}: {bad.object[bad.start : bad.start + 1]!r})"
        exc = StarletteHTTPException(400, detail)
    return await http_exception_handler(request, exc)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail: list[dict[str, Any]] = []
    for err in exc.errors():
        msg = str(err.get("msg", ""))
        ctx = err.get("ctx") or {}
        if err.get("type") == "json_invalid" and "error" in ctx:
            msg = f"malformed JSON: {ctx['error']}"
        loc = list(err.get("loc", ()))
        content_type = request.headers.get("content-type", "")
        if loc == ["body"] and "json" not in content_type:  # e.g. curl -d without -H
            msg += f" (the body must be JSON sent with Content-Type: application/json, not {content_type or 'none'})"
        item = {"loc": loc, "msg": msg, "type": str(err.get("type", ""))}
        detail.append(item)
    return JSONResponse({"detail": detail}, status_code=422)


#: While the store keeps refusing, a refusal is logged once, then at most once this often (s).
REMIND_EVERY = 60.0
_READS = ("GET", "HEAD")


class Refusals:
    """The store's refusals of requests, logged once, then at most once every ``remind_every`` s with
    how many more there were (a dashboard asks every 1-2 s: not a line each time), for reads and for
    writes apart."""

    def __init__(self, remind_every: float = REMIND_EVERY, clock: Callable[[], float] = time.monotonic) -> None:
        self.remind_every = remind_every
        self.clock = clock
        self._told: dict[str, float] = {}
        self._quiet: dict[str, int] = {}

    def tell(self, kind: str, request: Request, message: str) -> None:
        now = self.clock()
        told = self._told.get(kind)
        if told is not None and now - told < self.remind_every:
            self._quiet[kind] = self._quiet.get(kind, 0) + 1
            return
        quiet = self._quiet.pop(kind, 0)
        more = f" ({quiet} more refused in the last {now - told:.0f} s)" if quiet and told is not None else ""
        self._told[kind] = now
        log.error("store %s failed on %s %s: %s%s", kind, request.method, request.url.path, message, more)


def _refusals(request: Request) -> Refusals:
    state = request.app.state
    if not hasattr(state, "store_refusals"):
        state.store_refusals = Refusals()
    refusals: Refusals = state.store_refusals
    return refusals


async def _store_error(request: Request, exc: Exception) -> JSONResponse:
    """A read or write the store refused (PostgreSQL away, disk full, read-only): say which; the
    change, if any, was not made."""
    message = str(exc)
    read = request.method in _READS
    _refusals(request).tell("read" if read else "write", request, message)
    if read:
        return JSONResponse({"detail": f"the server's store cannot be read now, try again shortly ({message})"}, 503)
    if "full" in message:
        return JSONResponse({"detail": f"the server's disk is full, nothing was changed ({message})"}, status_code=507)
    return JSONResponse({"detail": f"the server's store cannot be written, nothing was changed ({message})"}, 503)


def install(app: FastAPI) -> None:
    """Answer errors with the handlers above (the fast path finds them on the app too)."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(sqlite3.OperationalError, _store_error)
    app.add_exception_handler(DomainError, _domain_error)
