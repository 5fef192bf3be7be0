"""Test files: an operator uploads, lists and deletes them; an agent fetches a file (or its share of
a split one) for the containers it runs."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse, StreamingResponse
from starlette.requests import ClientDisconnect

from octotui.protocol import API_PREFIX, ErrorBody, FileInfo
from octotui.server.auth import require_agent
from octotui.server.domain import files as files_domain
from octotui.server.http.deps import Anyone, Ctl, Reader, Writer, audit_change

router = APIRouter()
log = logging.getLogger("octotui.server")

#: The upload's path (the gate streams its body past the JSON routes' size limit).
UPLOAD = f"{API_PREFIX}/files"
_RAW_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        "description": "the file's bytes, as they are to be placed beside the plan",
    }
}
_BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
_BYTES: dict[int | str, dict[str, Any]] = {200: {"content": _BINARY, "description": "the bytes"}}


@router.post(
    "/files",
    response_model=FileInfo,
    status_code=201,
    tags=["files"],
    openapi_extra=_RAW_BODY,
    responses={507: {"model": ErrorBody, "description": "the server's disk is full"}},
)
async def upload_file(
    ctl: Ctl,
    who: Writer,
    request: Request,
    name: Annotated[str, Query(description="a plain file name (placed as /plan/NAME), never a path")],
) -> FileInfo | Response:
    """A file a test may bring (a CSV data set, another resource): the raw body, streamed to the
    server's disk, hashed (SHA-256), its lines counted when it is UTF-8 text (``lines`` None: binary).
    Over the server's ``--max-file-bytes``: 413 naming it; a name with a path: 422."""
    length = request.headers.get("content-length")
    size = int(length) if length is not None and length.isdigit() else None
    try:
        got = await ctl.receive_file(name, size, request.stream())
    except ClientDisconnect:  # nothing was kept; nobody reads this answer
        log.info("upload of file %r cut short by its client: nothing kept", name[:100])
        return Response(status_code=400)
    await audit_change(request, who, "file.upload", got.id, f"name={got.name} size={got.size} sha256={got.sha256}")
    return got


@router.get("/files", response_model=list[FileInfo], tags=["files"])
async def list_files(ctl: Ctl, _: Reader) -> list[FileInfo]:
    """Every uploaded file, oldest first."""
    await files_domain.refresh(ctl, stale_ok=True)  # PostgreSQL away: as this replica last knew them
    return ctl.file_list()


@router.get("/files/{file_id}", response_model=FileInfo, tags=["files"])
async def get_file(file_id: str, ctl: Ctl, _: Reader) -> FileInfo:
    await files_domain.refresh(ctl, file_id, stale_ok=True)
    return ctl.file_info(file_id)


@router.delete("/files/{file_id}", status_code=204, tags=["files"])
async def delete_file(file_id: str, ctl: Ctl, who: Writer, request: Request) -> Response:
    """Delete an uploaded file (409 while a test that has not ended brings it). Files are kept until
    deleted here: deleting a test never deletes its files."""
    await files_domain.refresh(ctl, file_id)
    f = await ctl.delete_file(file_id)
    await audit_change(request, who, "file.delete", file_id, f"name={f.name}")
    return Response(status_code=204)


@router.get(
    "/agents/{agent_id}/files/{file_id}", response_class=FileResponse, tags=["agent protocol"], responses=_BYTES
)
async def agent_file(agent_id: str, file_id: str, ctl: Ctl, who: Anyone) -> FileResponse:
    """A file whole, for the agent running a live container of a test that brings it (403 else)."""
    require_agent(who, agent_id)
    await files_domain.refresh(ctl, file_id, stale_ok=True)  # another replica's upload, or deletion
    f = ctl.file_for_agent(agent_id, file_id)
    return FileResponse(await files_domain.local_copy(ctl, f), media_type="application/octet-stream")


@router.get(
    "/agents/{agent_id}/files/{file_id}/shares/{index}",
    response_class=StreamingResponse,
    tags=["agent protocol"],
    responses=_BYTES,
)
async def agent_share(
    agent_id: str,
    file_id: str,
    index: int,
    ctl: Ctl,
    who: Anyone,
    test: Annotated[str, Query(description="the test that splits the file")],
) -> StreamingResponse:
    """Share ``index`` of a file split by ``test`` (the header line first when it keeps one), for the
    agent running that container index, live (403 else); ``Content-Length`` exact."""
    require_agent(who, agent_id)
    await files_domain.refresh(ctl, file_id, stale_ok=True)
    f, share = ctl.share_for_agent(agent_id, file_id, index, test)
    chunks = files_domain.share_chunks(await files_domain.local_copy(ctl, f), share)
    return StreamingResponse(
        chunks,
        media_type="application/octet-stream",
        headers={"Content-Length": str(share.size), "X-Checksum-Sha256": share.sha256},
    )
