"""Raw results: an agent uploads a container's JTL once it ended; an operator reads a test's merged JTL."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import StreamingResponse
from starlette.requests import ClientDisconnect

from octotui.protocol import API_PREFIX, ErrorBody
from octotui.server.auth import require_agent
from octotui.server.http.deps import Anyone, Ctl, Reader

router = APIRouter()
log = logging.getLogger("octotui.server")

#: The upload's path (the gate streams its body past the JSON routes' size limit).
UPLOAD = f"{API_PREFIX}/agents/{{agent_id}}/containers/{{container_id}}/jtl"
_GZIP_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        "description": "the container's JTL (CSV as JMeter wrote it), gzip-compressed; stored as sent",
    }
}


@router.put(
    "/agents/{agent_id}/containers/{container_id}/jtl",
    status_code=204,
    tags=["agent protocol"],
    openapi_extra=_GZIP_BODY,
    responses={507: {"model": ErrorBody, "description": "the server's disk is full"}},
)
async def upload_jtl(
    agent_id: str,
    container_id: str,
    ctl: Ctl,
    who: Anyone,
    request: Request,
    x_checksum_sha256: Annotated[
        str | None, Header(description="SHA-256 (hex) of the body as sent: a mismatch is refused (422)")
    ] = None,
) -> Response:
    """A container's JTL, from the agent that ran it, once it ended (409 before): streamed to the
    server's disk, checked against ``X-Checksum-Sha256``, kept as sent (gzip; ``Content-Encoding``
    is not decoded). Sent again, it replaces the earlier one. Over the server's limit: 413."""
    require_agent(who, agent_id)
    length = request.headers.get("content-length")
    size = int(length) if length is not None and length.isdigit() else None
    try:
        await ctl.receive_jtl(agent_id, container_id, x_checksum_sha256, size, request.stream())
    except ClientDisconnect:  # nothing was kept; nobody reads this answer
        log.info("JTL upload of container %s cut short by its agent %s: nothing kept", container_id, agent_id)
        return Response(status_code=400)
    return Response(status_code=204)


@router.get(
    "/tests/{test_id}/export/jtl",
    response_class=StreamingResponse,
    tags=["exports"],
    responses={
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "the merged JTL"},
        410: {"model": ErrorBody, "description": "its JTLs were deleted by the retention setting"},
    },
)
async def export_jtl(test_id: str, ctl: Ctl, _: Reader) -> StreamingResponse:
    """The test's merged JTL: the header line once, then each container's rows in container index
    order, each container's rows in the order JMeter wrote them (completion order): **not sorted by
    time** across containers (``X-Octotui-Order: container``). Only once the test ended (409 before).
    Containers whose JTL has not been uploaded (yet) are left out and named in ``X-Octotui-Missing``
    (comma-separated ids); none uploaded: 409; removed by the retention setting: 410; JTLs whose
    columns differ are not merged: 409 naming them."""
    merged = await ctl.merged_jtl(test_id)
    headers = {
        "Content-Disposition": f'attachment; filename="{merged.filename}"',
        "X-Octotui-Order": "container",
    }
    if merged.missing:
        headers["X-Octotui-Missing"] = ",".join(merged.missing)
    return StreamingResponse(merged.chunks, media_type="text/csv; charset=utf-8", headers=headers)
