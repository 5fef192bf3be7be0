"""The audit log: changes made through the API, newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from octotui.protocol import (
    AuditEntry,
)
from octotui.server.http.deps import Ctl, Reader

router = APIRouter()


@router.get("/audit", response_model=list[AuditEntry], tags=["audit"])
async def audit(
    ctl: Ctl,
    _: Reader,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[int | None, Query(ge=1, le=2**62, description="only entries with a smaller id")] = None,
) -> list[AuditEntry]:
    """Changes made through the API, newest first; page with ``before`` = the last id seen."""
    return await ctl.store.audit(limit, before)
