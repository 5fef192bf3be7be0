"""Operator token routes: create (the secret shown once), list, revoke."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from octotui.protocol import (
    TokenCreate,
    TokenCreated,
    TokenInfo,
)
from octotui.server.http.deps import Ctl, Reader, Writer, audit_change

router = APIRouter()


@router.post("/tokens", response_model=TokenCreated, status_code=201, tags=["tokens"])
async def create_token(body: TokenCreate, ctl: Ctl, who: Writer, request: Request) -> TokenCreated:
    """A named operator token; its secret is in this answer only."""
    created = await ctl.create_token(body.name, body.role)
    await audit_change(request, who, "token.create", created.name, f"role={created.role}")
    return created


@router.get("/tokens", response_model=list[TokenInfo], tags=["tokens"])
async def list_tokens(ctl: Ctl, _: Reader) -> list[TokenInfo]:
    return ctl.token_list()


@router.delete("/tokens/{name}", status_code=204, tags=["tokens"])
async def revoke_token(name: str, ctl: Ctl, who: Writer, request: Request) -> Response:
    """Revoke at once: the next request with that token gets 401."""
    await ctl.revoke_token(name)
    await audit_change(request, who, "token.revoke", name)
    return Response(status_code=204)
