"""Dependencies of the routes: the controller, who is asking (resolved by the gate) and the roles
a route needs, and the audit of a change with the caller's address."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from octotui.server.auth import Principal, require_operator
from octotui.server.controller import Controller

# Dependencies are coroutines on purpose: FastAPI runs a plain ``def`` dependency in its thread
# pool, which cost 15 % of the event loop at 5,000 agents and put heartbeat p99 at seconds
# (docs/BENCHMARKS.md); these do no blocking work.


async def _principal(request: Request) -> Principal:
    return request.state.principal  # type: ignore[no-any-return]


async def _controller(request: Request) -> Controller:
    return request.app.state.controller  # type: ignore[no-any-return]


async def reader(request: Request) -> Principal:
    """Any operator token (admin or read-only)."""
    principal: Principal = request.state.principal
    require_operator(principal, write=False)
    return principal


async def writer(request: Request) -> Principal:
    """An admin token."""
    principal: Principal = request.state.principal
    require_operator(principal, write=True, what=f"{request.method} {request.url.path}")
    return principal


def _address(request: Request) -> str:
    return request.client.host if request.client else ""


async def audit_change(request: Request, who: Principal, action: str, target: str, detail: str = "") -> None:
    """Record a change made by ``who`` through ``request``."""
    await request.app.state.controller.audit(who, action, target, detail, _address(request))


Ctl = Annotated[Controller, Depends(_controller)]
Reader = Annotated[Principal, Depends(reader)]
Writer = Annotated[Principal, Depends(writer)]
Anyone = Annotated[Principal, Depends(_principal)]
