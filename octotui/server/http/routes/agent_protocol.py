"""The agents' own routes: register, heartbeat, long poll for commands, acknowledge (``fastpath`` answers
the last three without FastAPI when it can: same answers)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from octotui.protocol import (
    Command,
    CommandAck,
    Heartbeat,
    HeartbeatResponse,
    RegisterRequest,
    RegisterResponse,
)
from octotui.server.auth import require_agent, require_provider
from octotui.server.http.deps import Anyone, Ctl, audit_change
from octotui.server.hub import poll_wait

router = APIRouter()


@router.post("/agents/register", response_model=RegisterResponse, tags=["agent protocol"])
async def register(body: RegisterRequest, ctl: Ctl, who: Anyone, request: Request) -> RegisterResponse:
    answer = await ctl.register(require_provider(who), body)
    detail = f"name={body.name} location={body.location} version={body.version}"
    await audit_change(request, who, "agent.register", answer.agent_id, detail)
    return answer


@router.post("/agents/{agent_id}/heartbeat", response_model=HeartbeatResponse, tags=["agent protocol"])
async def heartbeat(agent_id: str, body: Heartbeat, ctl: Ctl, who: Anyone) -> HeartbeatResponse:
    require_agent(who, agent_id)
    return ctl.heartbeat(agent_id, body)


@router.get("/agents/{agent_id}/commands", response_model=list[Command], tags=["agent protocol"])
async def poll_commands(
    agent_id: str,
    ctl: Ctl,
    who: Anyone,
    request: Request,
    wait_s: Annotated[float | None, Query(alias="timeout", ge=0, le=3600)] = None,
    fresh: bool = False,
) -> list[Command]:
    """Long poll: queued commands at once, else waits (20-30 s, randomised, or ``timeout``, capped)."""
    require_agent(who, agent_id)
    ctl.get_agent(agent_id)
    s = ctl.settings
    wait = poll_wait(s.poll_timeout_min, s.poll_timeout_max, wait_s)
    return await ctl.commands.wait_while_connected(agent_id, wait, fresh, request.receive)


@router.post("/agents/{agent_id}/commands/{command_id}/ack", status_code=204, tags=["agent protocol"])
async def ack_command(agent_id: str, command_id: str, body: CommandAck, ctl: Ctl, who: Anyone) -> Response:
    require_agent(who, agent_id)
    ctl.ack(agent_id, command_id, body)
    return Response(status_code=204)
