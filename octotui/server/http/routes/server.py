"""Server routes: health (public), the server's own description, and the change feed."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from octotui.protocol import (
    VERSION,
    Changes,
    Health,
    ServerInfo,
)
from octotui.server.http.deps import Anyone, Ctl, Reader
from octotui.server.http.responses import ListingResponse

router = APIRouter()
#: Routes that need no token (the gate lets their paths through).
public_router = APIRouter()


@router.get("/info", response_model=ServerInfo, tags=["server"])
async def info(ctl: Ctl, who: Anyone) -> ServerInfo:
    s = ctl.settings
    return ServerInfo(
        version=VERSION,
        url=ctl.url,
        role=who.kind if who.is_operator else None,
        heartbeat_interval=s.heartbeat_interval,
        late_after=s.late_after,
        offline_after=s.offline_after,
        default_image=s.default_image,
        max_plan_bytes=s.max_plan_bytes,
    )


@router.get("/changes", response_model=Changes, tags=["server"], response_class=ListingResponse)
async def changes(
    ctl: Ctl,
    _: Reader,
    since: Annotated[
        int | None, Query(ge=0, le=2**62, description="the revision of the previous answer (absent: everything)")
    ] = None,
    epoch: Annotated[str | None, Query(max_length=64, description="the epoch of the previous answer")] = None,
    ended: Annotated[
        int | None, Query(ge=0, le=100_000, description="the whole state keeps only the N newest ended tests")
    ] = None,
) -> Any:
    """What changed after revision ``since`` of ``epoch``: agents, providers, tests (without their
    containers) and containers, and the ids removed; or the whole state (``full``) when the
    server cannot answer exactly: no ``since``, another epoch (it restarted), too old a revision."""
    return ctl.changes(since, epoch, ended)


@public_router.get(
    "/health", response_model=Health, tags=["server"], responses={503: {"description": "a replica still starting"}}
)
async def health(ctl: Ctl) -> Health | JSONResponse:
    """Healthy once this server can serve: a replica (``--database``) only once it takes part in the
    replicas' exchange, since a write it took before would not reach the others (HAProxy's check and
    the clients' failover keep it out meanwhile)."""
    if ctl.store.database is not None and (ctl.replica is None or not ctl.replica.ready):
        return JSONResponse({"detail": "replica starting: not yet in step with the other replicas"}, 503)
    return Health()
