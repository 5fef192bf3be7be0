"""Every route of the OpenAPI document x every kind of token, through the real app.

The expected answer of each (route, token) pair comes from a few rules on the route's method and
path (``expect``), not from a per-route table: a new route is covered as soon as it is published.
Refused requests run against one shared world and must change nothing; allowed ones each get a
fresh world, so that a deletion cannot hide another route's answer.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from octotui.protocol import API_PREFIX
from tests.support.app import ADMIN, Env, Starter
from tests.support.wire import PLAN, bearer

KINDS = ("none", "wrong", "provider", "agent", "other-agent", "read-only", "admin")
PUBLIC = {"/health"}
#: Routes an agent uses on its own behalf: only that agent's token passes.
AGENT_SELF = re.compile(
    r"^/agents/\{agent_id\}/(heartbeat|commands(/\{command_id\}/ack)?|containers/\{container_id\}/jtl"
    r"|files/\{file_id\}(/shares/\{index\})?)$"
)
REGISTER = "/agents/register"
#: Server description: any valid token (agents read their heartbeat interval there).
ANY_TOKEN = {"/info"}


def expect(method: str, path: str, kind: str) -> int:
    """The status class (2, 4 for 401, 3 for 403) a ``kind`` token should get on ``method path``."""
    if path in PUBLIC:
        return 200
    if kind in ("none", "wrong"):
        return 401
    if path in ANY_TOKEN:
        return 200
    if path == REGISTER:
        return 200 if kind == "provider" else 403
    if AGENT_SELF.match(path):
        return 200 if kind == "agent" else 403
    if kind not in ("read-only", "admin"):
        return 403
    if method == "GET":
        return 200
    return 200 if kind == "admin" else 403


@dataclass
class World:
    env: Env
    tokens: dict[str, str | None] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    #: For the agents' own routes.
    agent_id: str = ""
    #: Path parameters of the routes where the rule's default target cannot succeed.
    overrides: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)


#: Routes whose body is not JSON: (content, headers) sent instead.
JTL_BODY = gzip.compress(b"timeStamp,elapsed,label\n1,2,home\n")
RAW: dict[tuple[str, str], tuple[bytes, dict[str, str]]] = {
    ("PUT", "/agents/{agent_id}/containers/{container_id}/jtl"): (
        JTL_BODY,
        {"X-Checksum-Sha256": hashlib.sha256(JTL_BODY).hexdigest(), "Content-Type": "application/octet-stream"},
    ),
    ("POST", "/files"): (b"user,password\nu1,p1\nu2,p2\n", {"Content-Type": "application/octet-stream"}),
}
#: Query strings of routes that need one.
QUERIES = {
    ("POST", "/files"): "?name=new.csv",
    ("GET", "/agents/{agent_id}/files/{file_id}/shares/{index}"): "?test={test_id}",
}


def sent(method: str, path: str, body: dict[str, Any] | None, headers: dict[str, str]) -> dict[str, Any]:
    """The body and headers of a request to ``method path``."""
    raw = RAW.get((method, path))
    if raw is None:
        return {"json": body, "headers": headers}
    return {"content": raw[0], "headers": {**raw[1], **headers}}


def host(cpu: float = 5.0) -> dict[str, Any]:
    return {"ts": time.time(), "cpu_percent": cpu, "cpu_per_core": [cpu, cpu], "memory_percent": 20.0,
            "memory_total": 8 * 1024**3, "memory_used": 1024**3}  # fmt: skip


BODIES: dict[str, dict[str, Any]] = {
    "ProviderCreate": {"name": "new-provider"},
    "ProviderRename": {"name": "renamed"},
    "RegisterRequest": {"name": "newhost", "location": "paris"},
    "Heartbeat": {"host": host(), "docker": {"available": True}},
    "CommandAck": {"ok": True},
    "TestCreate": {"name": "t2", "plan": PLAN, "provider": "local", "containers": 1},
    "TokenCreate": {"name": "new-token", "role": "read-only"},
    "MonitorCreate": {
        "name": "new-monitor",
        "agent": "{agent_id}",
        "kind": "prometheus",
        "target": "http://127.0.0.1:9100/metrics",
    },
    "MonitorUpdate": {"interval": 30, "credentials": {"username": "u", "password": "p"}},
}


def body_of(w: World, schema: str | None) -> dict[str, Any] | None:
    """The example body of ``schema`` with the world's ids in place of ``{…}`` values."""
    body = BODIES.get(schema) if schema else None
    if body is None:
        return None
    return {k: w.params[v[1:-1]] if isinstance(v, str) and v[:1] == "{" else v for k, v in body.items()}


async def build(env: Env) -> World:
    """A provider with two agents (one container each of a running test), a spare provider and token."""
    w = World(env)
    p = await env.provider("local")
    spare = await env.provider("spare")
    a_id, a_tok = await env.register(p["token"], name="a1")
    b_id, b_tok = await env.register(p["token"], name="b1")
    for agent_id, token in ((a_id, a_tok), (b_id, b_tok)):
        await env.beat(agent_id, token)
    # The running test brings a file copied whole and one split between its containers.
    body, raw = RAW[("POST", "/files")]
    copied, split, spare_file = [
        (await env.http.post("/files", params={"name": name}, content=body, headers=raw)).json()
        for name in ("copied.csv", "split.csv", "spare.csv")
    ]
    files = [{"id": copied["id"]}, {"id": split["id"], "split": True, "header": True}]
    r = await env.http.post(
        "/tests", json={"name": "t", "plan": PLAN, "provider": "local", "containers": 2, "files": files}
    )
    assert r.status_code == 201, r.text
    test = r.json()
    container = next(c for c in test["containers"] if c["agent"] == a_id)
    r = await env.http.get(f"/agents/{a_id}/commands", params={"timeout": 0}, headers=bearer(a_tok))
    command = r.json()[0]
    read_only = await env.ctl.add_operator_token("read-only", "watcher")
    await env.ctl.add_operator_token("read-only", "spare-token")
    w.tokens = {"none": None, "wrong": "not-a-token", "provider": p["token"], "agent": a_tok, "other-agent": b_tok,
                "read-only": read_only, "admin": ADMIN}  # fmt: skip
    w.agent_id = a_id
    w.params = {"provider_id": p["id"], "agent_id": a_id, "test_id": test["id"], "container_id": container["id"],
                "command_id": command["id"], "name": "spare-token", "file_id": copied["id"],
                "index": str(container["index"])}  # fmt: skip
    # Routes where the rule's default target cannot succeed: a provider with live containers
    # cannot be deleted (409), so the deletion aims at the empty one.
    # Likewise an agent running containers (409 unless forced): the deletion aims at an idle one.
    # A test ended (only such a test can be deleted, has a merged JTL, takes its containers' JTLs).
    r = await env.http.post("/tests", json={"name": "done", "plan": PLAN, "provider": "local", "containers": 2})
    done = r.json()
    for agent_id, token in ((a_id, a_tok), (b_id, b_tok)):
        polled = await env.http.get(f"/agents/{agent_id}/commands", params={"timeout": 0}, headers=bearer(token))
        launch = next(m for m in polled.json() if m["test_id"] == done["id"])
        await env.http.post(f"/agents/{agent_id}/commands/{launch['id']}/ack", json={"ok": True}, headers=bearer(token))
        report = {"container_id": launch["container_id"], "test_id": done["id"], "state": "finished", "exit_code": 0}
        await env.beat(agent_id, token, containers=[report], complete=False)
    ended = next(c["id"] for c in done["containers"] if c["agent"] == a_id)
    content, extra = RAW[("PUT", "/agents/{agent_id}/containers/{container_id}/jtl")]
    r = await env.http.put(
        f"/agents/{a_id}/containers/{ended}/jtl", content=content, headers={**extra, **bearer(a_tok)}
    )
    assert r.status_code == 204, r.text
    idle_id, idle_tok = await env.register(p["token"], name="idle")
    await env.beat(idle_id, idle_tok)
    w.overrides = {
        ("DELETE", "/providers/{provider_id}"): {"provider_id": spare["id"]},
        ("DELETE", "/agents/{agent_id}"): {"agent_id": idle_id},
        ("DELETE", "/tests/{test_id}"): {"test_id": done["id"]},
        ("GET", "/tests/{test_id}/export/jtl"): {"test_id": done["id"]},
        ("PUT", "/agents/{agent_id}/containers/{container_id}/jtl"): {"container_id": ended},
        # A file a running test brings cannot be deleted (409): the deletion aims at an unused one.
        ("DELETE", "/files/{file_id}"): {"file_id": spare_file["id"]},
        ("GET", "/agents/{agent_id}/files/{file_id}/shares/{index}"): {"file_id": split["id"]},
    }
    w.params["baseline_id"] = done["id"]
    r = await env.http.post(
        "/monitors", json={"name": "watch", "agent": a_id, "kind": "http", "target": "http://127.0.0.1/"}
    )
    assert r.status_code == 201, r.text
    w.params["monitor_id"] = r.json()["id"]
    return w


def routes(openapi: dict[str, Any]) -> list[tuple[str, str, str | None, dict[str, Any]]]:
    """(method, path without prefix, request body schema name, operation) of every published route."""
    out = []
    for full, ops in openapi["paths"].items():
        path = full.removeprefix(API_PREFIX)
        for method, op in ops.items():
            ref = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
            out.append((method.upper(), path, ref.rsplit("/", 1)[-1] if ref else None, op))
    return sorted(out)


def url(w: World, method: str, path: str) -> str:
    params = {**w.params, **w.overrides.get((method, path), {})}
    filled = re.sub(r"\{(\w+)\}", lambda m: params[m.group(1)], path)
    if path.endswith("/commands"):
        filled += "?timeout=0"
    query = QUERIES.get((method, path), "")
    return filled + re.sub(r"\{(\w+)\}", lambda m: params[m.group(1)], query)


def headers(w: World, kind: str) -> dict[str, str]:
    token = w.tokens[kind]
    return bearer(token) if token else {"Authorization": ""}


async def state(env: Env) -> tuple[Any, ...]:
    """Everything readable, the tokens and the audit log included."""
    out = [*(await env.snapshot())]
    for path in ("/tokens", "/audit", "/monitors", "/alarms"):
        r = await env.http.get(path)
        assert r.status_code == 200
        out.append(r.json())
    a = env.ctl.agents
    out.append(sorted((i, x.last_seen) for i, x in a.items()))
    out.append(sorted((i, len(env.ctl.commands.pending(i))) for i in a))
    return tuple(out)


async def test_every_route_with_every_token(start_server: Starter) -> None:
    # The shared world lives as long as the whole walk (minutes on a loaded machine): its agents must
    # not go offline meanwhile, or a refused request would seem to change their state.
    shared = await build(await start_server(late_after=900.0, offline_after=1800.0))
    openapi = (await shared.env.http.get("/openapi.json")).json()
    table = routes(openapi)
    assert len(table) >= 20, "the OpenAPI document lost routes"
    drains = {("POST", "/agents/{agent_id}/drain"), ("POST", "/agents/{agent_id}/undrain")}
    assert drains <= {(m, p) for m, p, _, _ in table}, "drain and undrain walked with every token kind"
    missing = {schema for _, _, schema, _ in table if schema and schema not in BODIES}
    assert not missing, f"no example body for {missing}: add one to BODIES"
    checked = 0
    for method, path, schema, _ in table:
        for kind in KINDS:
            wanted = expect(method, path, kind)
            if wanted != 200:
                before = await state(shared.env)
                body = body_of(shared, schema)
                r = await shared.env.http.request(
                    method, url(shared, method, path), **sent(method, path, body, headers(shared, kind))
                )
                assert r.status_code == wanted, (method, path, kind, r.status_code, r.text)
                detail = r.json()["detail"]
                assert isinstance(detail, str) and detail
                if kind == "read-only":
                    assert "read-only token" in detail and "not allowed" in detail, detail
                assert await state(shared.env) == before, (method, path, kind)
            else:
                w = await build(await start_server())
                body = body_of(w, schema)
                r = await w.env.http.request(method, url(w, method, path), **sent(method, path, body, headers(w, kind)))
                assert 200 <= r.status_code < 300, (method, path, kind, r.status_code, r.text)
            checked += 1
    assert checked == len(table) * len(KINDS)


@pytest.mark.parametrize(
    ("method", "path", "kind", "status"),
    [
        ("GET", "/health", "none", 200),
        ("GET", "/info", "agent", 200),
        ("GET", "/agents", "agent", 403),
        ("GET", "/tokens", "read-only", 200),
        ("DELETE", "/tokens/{name}", "read-only", 403),
        ("POST", "/agents/{agent_id}/heartbeat", "other-agent", 403),
        ("POST", "/agents/register", "admin", 403),
        ("GET", "/audit", "provider", 403),
        ("GET", "/providers", "wrong", 401),
        ("POST", "/agents/{agent_id}/drain", "admin", 200),
        ("POST", "/agents/{agent_id}/drain", "read-only", 403),
        ("POST", "/agents/{agent_id}/undrain", "agent", 403),
        ("POST", "/agents/{agent_id}/undrain", "provider", 403),
    ],
)
def test_the_rules_say_what_the_issue_says(method: str, path: str, kind: str, status: int) -> None:
    assert expect(method, path, kind) == status


async def test_rotating_a_provider_token_keeps_its_agents(start_server: Starter) -> None:
    env = await start_server()
    p = await env.provider("local")
    agent_id, token = await env.register(p["token"])
    r = await env.http.post(f"/providers/{p['id']}/rotate-token")
    assert r.status_code == 200
    rotated = r.json()["token"]
    await env.beat(agent_id, token)  # still accepted
    r = await env.http.get(f"/agents/{agent_id}/commands", params={"timeout": 0}, headers=bearer(token))
    assert r.status_code == 200
    r = await env.http.post("/agents/register", json={"name": "h2", "location": "x"}, headers=bearer(p["token"]))
    assert r.status_code == 401
    assert rotated != p["token"]
    await env.register(rotated, name="h2")


async def test_removing_an_agent_revokes_its_token(start_server: Starter) -> None:
    env = await start_server()
    p = await env.provider("local")
    agent_id, token = await env.register(p["token"])
    await env.beat(agent_id, token)
    assert (await env.http.delete(f"/agents/{agent_id}")).status_code == 204
    hb = {"host": host()}
    r = await env.http.post(f"/agents/{agent_id}/heartbeat", json=hb, headers=bearer(token))
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    r = await env.http.get("/info", headers=bearer(token))
    assert r.status_code == 401


async def test_a_revoked_operator_token_is_refused_at_once(start_server: Starter) -> None:
    env = await start_server()
    r = await env.http.post("/tokens", json={"name": "ops", "role": "admin"})
    secret = r.json()["token"]
    assert (await env.http.get("/providers", headers=bearer(secret))).status_code == 200
    assert (await env.http.delete("/tokens/ops")).status_code == 204
    r = await env.http.get("/providers", headers=bearer(secret))
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
