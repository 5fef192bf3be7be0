"""The agent protocol spoken by hand against the in-process app (:mod:`tests.support.app`): plain
HTTP calls, enough for the API's rules, with the bodies a real agent would send."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from tests.support.app import Env

PLAN = (
    '<?xml version="1.0"?><jmeterTestPlan version="1.2"><hashTree><TestPlan testname="t"/></hashTree></jmeterTestPlan>'
)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def register(
    http: httpx.AsyncClient, token: str, name: str = "host1", location: str = "paris", **extra: Any
) -> tuple[str, str]:
    """Register an agent with a provider's registration ``token``; its id and agent token."""
    r = await http.post("/agents/register", json={"name": name, "location": location, **extra}, headers=bearer(token))
    assert r.status_code == 200, r.text
    return r.json()["agent_id"], r.json()["agent_token"]


async def beat(
    http: httpx.AsyncClient,
    agent_id: str,
    token: str,
    *,
    cpu: float = 10.0,
    mem: float = 20.0,
    docker: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """One heartbeat with host figures (and ``extra`` fields, e.g. ``containers``); the answer."""
    host = {"ts": time.time(), "cpu_percent": cpu, "cpu_per_core": [cpu, cpu], "memory_percent": mem,
            "memory_total": 8 * 1024**3, "memory_used": 1024**3}  # fmt: skip
    body = {"host": host, "docker": {"available": docker, "version": "20.10"}, **extra}
    r = await http.post(f"/agents/{agent_id}/heartbeat", json=body, headers=bearer(token))
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def fleet(env: Env, *names: str, location: str = "paris", docker: bool = True) -> list[tuple[str, str]]:
    """Register agents in provider "local" (created if needed) and make them heartbeat once."""
    providers = {p["name"]: p for p in (await env.http.get("/providers")).json()}
    p = providers.get("local") or await env.provider("local")
    out = []
    for name in names:
        agent_id, token = await env.register(env.provider_tokens[p["id"]], name=name, location=location)
        await env.beat(agent_id, token, docker=docker)
        out.append((agent_id, token))
    return out


async def poll(env: Env, agent_id: str, token: str) -> list[dict[str, Any]]:
    r = await env.http.get(f"/agents/{agent_id}/commands", params={"timeout": 0}, headers=bearer(token))
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def ack(env: Env, agent_id: str, token: str, command_id: str, ok: bool = True, error: str | None = None) -> None:
    r = await env.http.post(
        f"/agents/{agent_id}/commands/{command_id}/ack", json={"ok": ok, "error": error}, headers=bearer(token)
    )
    assert r.status_code == 204, r.text


def report(cmd: dict[str, Any], state: str, **extra: Any) -> dict[str, Any]:
    """A container report answering the launch command ``cmd``."""
    return {"container_id": cmd["container_id"], "test_id": cmd["test_id"], "command_id": cmd["id"], "state": state,
            **extra}  # fmt: skip


def figures(samples: int, rate: float, avg: float, errors: int = 0, active: int = 5) -> dict[str, Any]:
    return {"samples": samples, "errors": errors, "rate": rate, "avg_ms": avg, "min_ms": 1, "max_ms": 90,
            "active": active}  # fmt: skip


def spec(**over: Any) -> dict[str, Any]:
    """A test to create (2 containers of PLAN in provider "local"), with ``over`` on top."""
    body: dict[str, Any] = {"name": "checkout", "plan": PLAN, "provider": "local", "containers": 2}
    body.update(over)
    return body
