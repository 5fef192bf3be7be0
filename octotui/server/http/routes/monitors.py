"""Monitor routes: create, list, read, change, delete, recent samples; alarms; a test's monitors.

Credentials are write-only: accepted on create and update, never in an answer, a log line or the
audit (which names only the fields set). Agents get theirs through their heartbeat answers only.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from octotui.protocol.monitors import Alarm, Monitor, MonitorCreate, MonitorMetrics, MonitorUpdate, TestMonitors
from octotui.server.domain import alarms, monitors
from octotui.server.http.deps import Ctl, Reader, Writer, audit_change
from octotui.server.http.responses import ListingResponse

router = APIRouter()


@router.post("/monitors", response_model=Monitor, status_code=201, tags=["monitors"])
async def create_monitor(body: MonitorCreate, ctl: Ctl, who: Writer, request: Request) -> Monitor:
    m = await monitors.create(ctl, body)
    creds = ",".join(m.spec["credentials_set"]) or "none"
    detail = f"name={m.name} kind={m.kind} agent={m.agent_id} mode={m.mode} credentials={creds}"
    await audit_change(request, who, "monitor.create", m.id, detail)
    return monitors.out(ctl, m)


@router.get("/monitors", response_model=list[Monitor], tags=["monitors"], response_class=ListingResponse)
async def list_monitors(
    ctl: Ctl, _: Reader, agent: Annotated[str | None, Query(max_length=64, description="only this agent's")] = None
) -> list[Monitor]:
    """Every monitor (oldest first) with its state, last error, last values and raised alarms."""
    return monitors.listed(ctl, agent)


@router.get("/monitors/{monitor_id}", response_model=Monitor, tags=["monitors"])
async def get_monitor(monitor_id: str, ctl: Ctl, _: Reader) -> Monitor:
    return monitors.out(ctl, monitors.get(ctl, monitor_id))


@router.patch("/monitors/{monitor_id}", response_model=Monitor, tags=["monitors"])
async def update_monitor(monitor_id: str, body: MonitorUpdate, ctl: Ctl, who: Writer, request: Request) -> Monitor:
    """Change the fields given (``credentials: null`` removes them); the agent gets the change at
    its next heartbeat."""
    m, changed = await monitors.update(ctl, monitor_id, body)
    detail = f"name={m.name} changed={','.join(changed) or 'nothing'}"
    if "credentials" in changed:
        detail += f" credentials={','.join(m.spec['credentials_set']) or 'removed'}"
    await audit_change(request, who, "monitor.update", m.id, detail)
    return monitors.out(ctl, m)


@router.delete("/monitors/{monitor_id}", status_code=204, tags=["monitors"])
async def delete_monitor(monitor_id: str, ctl: Ctl, who: Writer, request: Request) -> Response:
    m = await monitors.delete(ctl, monitor_id)
    await audit_change(request, who, "monitor.delete", m.id, f"name={m.name} kind={m.kind} agent={m.agent_id}")
    return Response(status_code=204)


@router.get("/monitors/{monitor_id}/metrics", response_model=MonitorMetrics, tags=["monitors"])
async def monitor_metrics(
    monitor_id: str,
    ctl: Ctl,
    _: Reader,
    seconds: Annotated[
        float | None, Query(gt=0, le=3600, description="only the samples of the last N seconds (default: all kept)")
    ] = None,
) -> MonitorMetrics:
    """Its recent samples (the last 10 minutes at most), oldest first, metrics named as the source names them."""
    return monitors.metrics(ctl, monitor_id, seconds)


@router.get("/alarms", response_model=list[Alarm], tags=["monitors"], response_class=ListingResponse)
async def list_alarms(
    ctl: Ctl,
    _: Reader,
    monitor: Annotated[str | None, Query(max_length=64, description="only this monitor's (id)")] = None,
    test: Annotated[str | None, Query(max_length=64, description="only those kept with this test (id)")] = None,
    active: Annotated[bool | None, Query(description="true: raised and not cleared; false: cleared")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[Alarm]:
    """Alarms, newest first."""
    return await alarms.listed(ctl, monitor, test, active, limit)


@router.get("/tests/{test_id}/monitors", response_model=TestMonitors, tags=["tests"])
async def test_monitors(test_id: str, ctl: Ctl, _: Reader) -> TestMonitors:
    """The monitors a test names: each metric's points during the test (kept over a restart), and
    the alarms kept with it."""
    return await alarms.of_test(ctl, test_id)
