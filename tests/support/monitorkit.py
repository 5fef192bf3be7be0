"""Monitors spoken by hand against the in-process app: bodies an operator sends, reports a wire-level
agent sends in its heartbeats, and what is readable to prove a refusal changed nothing."""

from __future__ import annotations

from typing import Any

from tests.support import wire
from tests.support.app import Env
from tests.support.wire import bearer

#: A secret that must never come back: in no answer, no audit entry, no log line, not in the file.
PASSWORD = "s3cr3t-Pa55-zebra-9731"


def ssh_body(agent: str, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "db-host",
        "agent": agent,
        "kind": "linux-ssh",
        "target": "127.0.0.1:2222",
        "interval": 5,
        "credentials": {"username": "monitor", "password": PASSWORD},
        "thresholds": [{"metric": "load1", "severity": "critical", "above": 4, "for": 10}],
    }
    body.update(over)
    return body


def prom_body(agent: str, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "node", "agent": agent, "kind": "prometheus",
                            "target": "http://127.0.0.1:9100/metrics", "interval": 5}  # fmt: skip
    body.update(over)
    return body


def sample(ts: float, **values: float) -> dict[str, Any]:
    return {"ts": ts, "values": values}


def mreport(monitor_id: str, *samples: dict[str, Any], state: str = "ok", error: str | None = None) -> dict[str, Any]:
    return {"id": monitor_id, "state": state, "error": error, "samples": list(samples)}


async def beat_monitors(
    env: Env, agent_id: str, token: str, revision: int | None = 0, reports: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:  # fmt: skip
    """One heartbeat holding ``revision`` of the assignments (0: none held; None: an agent older
    than monitors), with monitor ``reports``; the answer.
    Not a complete container list (unless ``complete=True``): containers of a test keep running."""
    extra.setdefault("complete", False)
    return await env.beat(agent_id, token, monitor_revision=revision, monitors=reports or [], **extra)


async def readable(env: Env) -> tuple[Any, ...]:
    """Monitors, alarms and the audit as an operator reads them (a refusal must leave them alike)."""
    out = []
    for path in ("/monitors", "/alarms", "/audit"):
        r = await env.http.get(path)
        assert r.status_code == 200, r.text
        out.append(r.json())
    return tuple(out)


async def create(env: Env, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    headers = bearer(token) if token else None
    r = await env.http.post("/monitors", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def fleet(env: Env, *names: str, **kw: Any) -> list[tuple[str, str]]:
    """:func:`tests.support.wire.fleet`'s agents, each then beating as an agent that runs monitors
    (revision 0, none held): its first heartbeat named none, as an agent older than monitors does."""
    agents = await wire.fleet(env, *names, **kw)
    for agent_id, token in agents:
        await beat_monitors(env, agent_id, token)
    return agents
