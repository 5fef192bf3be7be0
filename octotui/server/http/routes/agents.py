"""Agent routes on the operator side: list, read, delete, drain and undrain, host metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from octotui.protocol import (
    Agent,
    AgentMetrics,
)
from octotui.server.domain import fleet
from octotui.server.http.deps import Ctl, Reader, Writer, audit_change
from octotui.server.http.responses import ListingResponse

router = APIRouter()


@router.get("/agents", response_model=list[Agent], tags=["agents"], response_class=ListingResponse)
async def list_agents(ctl: Ctl, _: Reader) -> list[Agent]:
    return [ctl.agent_out(a) for a in ctl.agents.values()]


@router.get("/agents/{agent_id}", response_model=Agent, tags=["agents"], response_class=ListingResponse)
async def get_agent(agent_id: str, ctl: Ctl, _: Reader) -> Agent:
    return ctl.agent_out(ctl.get_agent(agent_id))


@router.delete("/agents/{agent_id}", status_code=204, tags=["agents"], responses={202: {}, 409: {}})
async def delete_agent(
    agent_id: str,
    ctl: Ctl,
    who: Writer,
    request: Request,
    force: Annotated[bool, Query(description="also an agent running containers: they are stopped first")] = False,
) -> Response:
    """Forget an agent and revoke its token at once (204). An agent running containers: 409
    naming its tests, unless ``force``; forced, 202 while its containers are stopped and hand in
    their results (it is forgotten once they ended), 204 when it is offline (they are lost)."""
    a = ctl.get_agent(agent_id)
    name = a.name
    done = await ctl.delete_agent(agent_id, force=force)
    await audit_change(request, who, "agent.delete", agent_id, f"name={name}" + (" force=true" if force else ""))
    return Response(status_code=204 if done else 202)


async def _drain(agent_id: str, ctl: Ctl, who: Writer, request: Request, drained: bool) -> Agent:
    a, changed = await fleet.drain(ctl, agent_id, drained)
    action = "agent.drain" if drained else "agent.undrain"
    await audit_change(request, who, action, agent_id, f"name={a.name}" + ("" if changed else " (already so)"))
    return ctl.agent_out(a)


@router.post("/agents/{agent_id}/drain", response_model=Agent, tags=["agents"], responses={404: {}})
async def drain_agent(agent_id: str, ctl: Ctl, who: Writer, request: Request) -> Agent:
    """Take an agent out of service: no new containers are placed on it (placement and dry runs
    skip it and say so), the ones it runs finish. Kept over restarts until ``/undrain``; asked
    again, nothing changes. The agent as it is now."""
    return await _drain(agent_id, ctl, who, request, True)


@router.post("/agents/{agent_id}/undrain", response_model=Agent, tags=["agents"], responses={404: {}})
async def undrain_agent(agent_id: str, ctl: Ctl, who: Writer, request: Request) -> Agent:
    """Put a drained agent back in service (asked again, or of an agent not drained: nothing changes)."""
    return await _drain(agent_id, ctl, who, request, False)


@router.get("/agents/{agent_id}/metrics", response_model=AgentMetrics, tags=["agents"])
async def agent_metrics(
    agent_id: str, ctl: Ctl, _: Reader, seconds: Annotated[float | None, Query(gt=0, le=86400)] = None
) -> AgentMetrics:
    ctl.get_agent(agent_id)
    return AgentMetrics(agent_id=agent_id, samples=ctl.hosts.get(agent_id, seconds))
