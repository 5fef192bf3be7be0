"""Provider routes: list, create, read, rename, delete, rotate the registration token."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from octotui.protocol import (
    Provider,
    ProviderCreate,
    ProviderRename,
)
from octotui.server.http.deps import Ctl, Reader, Writer, audit_change
from octotui.server.http.responses import ListingResponse

router = APIRouter()


@router.get("/providers", response_model=list[Provider], tags=["providers"], response_class=ListingResponse)
async def list_providers(ctl: Ctl, _: Reader) -> list[Provider]:
    return [ctl.provider_out(p) for p in ctl.sorted_providers()]


@router.post("/providers", response_model=Provider, status_code=201, tags=["providers"])
async def create_provider(body: ProviderCreate, ctl: Ctl, who: Writer, request: Request) -> Provider:
    p, token = await ctl.create_provider(body.name)
    await audit_change(request, who, "provider.create", p.id, f"name={p.name}")
    return ctl.provider_out(p, token)


@router.get("/providers/{provider_id}", response_model=Provider, tags=["providers"])
async def get_provider(provider_id: str, ctl: Ctl, _: Reader) -> Provider:
    return ctl.provider_out(ctl.get_provider(provider_id))


@router.patch("/providers/{provider_id}", response_model=Provider, tags=["providers"])
async def rename_provider(provider_id: str, body: ProviderRename, ctl: Ctl, who: Writer, request: Request) -> Provider:
    old = ctl.get_provider(provider_id).name
    p = await ctl.rename_provider(provider_id, body.name)
    await audit_change(request, who, "provider.rename", p.id, f"{old} -> {p.name}")
    return ctl.provider_out(p)


@router.delete("/providers/{provider_id}", status_code=204, tags=["providers"])
async def delete_provider(provider_id: str, ctl: Ctl, who: Writer, request: Request) -> Response:
    name = ctl.get_provider(provider_id).name
    await ctl.delete_provider(provider_id)
    await audit_change(request, who, "provider.delete", provider_id, f"name={name}")
    return Response(status_code=204)


@router.post("/providers/{provider_id}/rotate-token", response_model=Provider, tags=["providers"])
async def rotate_token(provider_id: str, ctl: Ctl, who: Writer, request: Request) -> Provider:
    """A new registration token; agents already registered keep their own tokens."""
    p, token = await ctl.rotate_provider_token(provider_id)
    await audit_change(request, who, "provider.rotate-token", p.id, f"name={p.name}")
    return ctl.provider_out(p, token)
