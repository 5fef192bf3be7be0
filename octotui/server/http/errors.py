"""Errors as HTTP answers: the domain's errors mapped to status codes in one table, the store's
refusals, FastAPI's own validation and parsing errors in the server's words."""

from __future__ import annotations

import logging
import sqlite3
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


async def _store_error(request: Request, exc: Exception) -> JSONResponse:
    """A write the store refused (disk full, read-only): say so; the change was not made."""
    message = str(exc)
    log.error("store write failed on %s %s: %s", request.method, request.url.path, message)
    if "full" in message:
        return JSONResponse({"detail": f"the server's disk is full, nothing was changed ({message})"}, status_code=507)
    return JSONResponse({"detail": f"the server's store cannot be written, nothing was changed ({message})"}, 503)


def install(app: FastAPI) -> None:
    """Answer errors with the handlers above (the fast path finds them on the app too)."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(sqlite3.OperationalError, _store_error)
    app.add_exception_handler(DomainError, _domain_error)
