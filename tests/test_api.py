"""The control server's API through the real app, in process (httpx.ASGITransport + its lifespan).

The "agents" here are plain HTTP clients speaking the agent protocol: enough for the API's rules.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from octotui.server.app import create_app
from octotui.server.auth import hash_token
from octotui.server.settings import ServerSettings
from tests.support.app import ADMIN, Env, Starter
from tests.support.wire import PLAN, bearer

# --- server --------------------------------------------------------------------------------------


async def test_health_needs_no_token(env: Env) -> None:
    r = await env.http.get("/health", headers={"Authorization": ""})
    assert r.status_code == 200
    assert r.json()["status"] == "ok" and r.json()["version"]


async def test_info_tells_the_role_and_thresholds(env: Env) -> None:
    info = (await env.http.get("/info")).json()
    assert info["role"] == "admin"
    assert info["late_after"] == 30.0 and info["offline_after"] == 60.0
    assert info["default_image"] == "justb4/jmeter:5.5"
    ro = await env.ctl.add_operator_token("read-only")
    assert (await env.http.get("/info", headers=bearer(ro))).json()["role"] == "read-only"


async def test_openapi_is_published(env: Env) -> None:
    r = await env.http.get("/openapi.json", headers={"Authorization": ""})
    assert r.status_code == 200
    assert "/api/v1/agents/{agent_id}/heartbeat" in r.json()["paths"]


# --- providers -----------------------------------------------------------------------------------


async def test_providers_crud(env: Env) -> None:
    p = await env.provider("paris-lab")
    assert p["name"] == "paris-lab" and p["token"] and p["id"] and p["agents"] == 0
    listed = (await env.http.get("/providers")).json()
    assert [x["id"] for x in listed] == [p["id"]]

    r = await env.http.patch(f"/providers/{p['id']}", json={"name": "lab"})
    assert r.status_code == 200 and r.json()["name"] == "lab"
    assert (await env.http.get(f"/providers/{p['id']}")).json()["name"] == "lab"

    r = await env.http.post(f"/providers/{p['id']}/rotate-token")
    assert r.status_code == 200
    new_token = r.json()["token"]
    assert new_token != p["token"]
    r = await env.http.post("/agents/register", json={"name": "h", "location": "x"}, headers=bearer(p["token"]))
    assert r.status_code == 401
    agent_id, _ = await env.register(new_token)
    assert (await env.http.get(f"/providers/{p['id']}")).json()["agents"] == 1

    r = await env.http.delete(f"/providers/{p['id']}")
    assert r.status_code == 204
    assert (await env.http.get("/providers")).json() == []
    assert (await env.http.get(f"/agents/{agent_id}")).status_code == 404
    r = await env.http.post("/agents/register", json={"name": "h", "location": "x"}, headers=bearer(new_token))
    assert r.status_code == 401


async def test_registration_tokens_are_stored_hashed_and_shown_once(env: Env) -> None:
    p = await env.provider("lab")
    rotated = (await env.http.post(f"/providers/{p['id']}/rotate-token")).json()["token"]
    renamed = (await env.http.patch(f"/providers/{p['id']}", json={"name": "lab2"})).json()
    answers = [
        renamed,
        (await env.http.get(f"/providers/{p['id']}")).json(),
        *(await env.http.get("/providers")).json(),
    ]
    assert [a["token"] for a in answers] == ["", "", ""], "an admin gets the token once, then never again"
    await env.register(rotated)
    # every byte SQLite wrote (the database and its write-ahead log)
    stored = b"".join(f.read_bytes() for f in env.settings.data_dir.iterdir() if f.name.startswith("octotui.db"))
    assert p["token"].encode() not in stored and rotated.encode() not in stored
    assert hash_token(rotated).encode() in stored
    for f in env.settings.data_dir.iterdir():
        if f.name.startswith("octotui.db"):
            assert f.stat().st_mode & 0o777 == 0o600, f"{f.name} is readable by others"


def test_a_store_with_plain_registration_tokens_is_hashed_on_open(tmp_path: Path) -> None:
    """Stores written before tokens were hashed: opened once, the tokens still register, unreadable."""
    settings = ServerSettings(data_dir=tmp_path / "old", admin_token=ADMIN, flush_interval=0.05)
    settings.data_dir.mkdir()
    old = sqlite3.connect(settings.db_path)
    old.execute(
        "CREATE TABLE providers (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, token TEXT NOT NULL,"
        " created_at REAL NOT NULL)"
    )
    rows = [("p-old1", "paris", "plain-token-one", 1.0), ("p-old2", "lyon", "plain-token-two", 2.0)]
    old.executemany("INSERT INTO providers VALUES (?, ?, ?, ?)", rows)
    old.commit()
    old.close()

    async def use() -> list[int]:
        app = create_app(settings)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test/api/v1") as http,
        ):
            listed = (await http.get("/providers", headers=bearer(ADMIN))).json()
            assert [(x["id"], x["name"], x["token"]) for x in listed] == [
                ("p-old1", "paris", ""),
                ("p-old2", "lyon", ""),
            ]
            codes = []
            for token in ("plain-token-one", "plain-token-two", "wrong"):
                r = await http.post("/agents/register", json={"name": "h", "location": "x"}, headers=bearer(token))
                codes.append(r.status_code)
            return codes

    assert asyncio.run(use()) == [200, 200, 401]
    assert asyncio.run(use()) == [200, 200, 401], "a second start finds the store as it left it"
    db = sqlite3.connect(settings.db_path)
    columns = [row[1] for row in db.execute("PRAGMA table_info(providers)")]
    hashed = db.execute("SELECT id, token_hash FROM providers ORDER BY id").fetchall()
    db.close()
    assert columns == ["id", "name", "token_hash", "created_at"]
    assert hashed == [("p-old1", hash_token("plain-token-one")), ("p-old2", hash_token("plain-token-two"))]
    stored = b"".join(f.read_bytes() for f in settings.data_dir.iterdir() if f.name.startswith("octotui.db"))
    assert b"plain-token" not in stored, "no readable token left in freed pages or the log"


async def test_duplicate_provider_name_is_409_and_changes_nothing(env: Env) -> None:
    a = await env.provider("one")
    await env.provider("two")
    before = await env.snapshot()
    r = await env.http.post("/providers", json={"name": "ONE"})
    assert r.status_code == 409 and "already exists" in r.json()["detail"]
    r = await env.http.patch(f"/providers/{a['id']}", json={"name": "two"})
    assert r.status_code == 409
    assert await env.snapshot() == before


async def test_read_only_token_reads_everything_changes_nothing(env: Env) -> None:
    p = await env.provider()
    ro = bearer(await env.ctl.add_operator_token("read-only"))
    before = await env.snapshot()
    for path in ("/providers", "/agents", "/tests", "/info", f"/providers/{p['id']}"):
        assert (await env.http.get(path, headers=ro)).status_code == 200, path
    assert (await env.http.get("/providers", headers=ro)).json()[0]["token"] == ""
    changes = [
        ("POST", "/providers", {"name": "x"}),
        ("PATCH", f"/providers/{p['id']}", {"name": "y"}),
        ("DELETE", f"/providers/{p['id']}", None),
        ("POST", f"/providers/{p['id']}/rotate-token", None),
        ("POST", "/tests", {"name": "t", "plan": PLAN, "provider": p["id"], "containers": 1}),
    ]
    for method, path, body in changes:
        r = await env.http.request(method, path, json=body, headers=ro)
        assert r.status_code == 403, (method, path, r.text)
        assert "read-only" in r.json()["detail"]
    assert await env.snapshot() == before


# --- agents --------------------------------------------------------------------------------------


async def test_register_heartbeat_online_with_host_figures(env: Env) -> None:
    p = await env.provider()
    agent_id, token = await env.register(p["token"], name="web-1", location="paris", cpu_count=2)
    reply = await env.beat(agent_id, token, cpu=42.5, mem=61.0)
    assert reply == {"ok": True, "stop": [], "labels_wanted": [], "monitors": None, "monitor_revision": None}
    agents = (await env.http.get("/agents")).json()
    assert len(agents) == 1
    a = agents[0]
    assert a["id"] == agent_id and a["name"] == "web-1" and a["provider"] == p["id"]
    assert a["provider_name"] == "local" and a["location"] == "paris" and a["status"] == "online"
    assert a["host"]["cpu_percent"] == 42.5 and a["host"]["memory_percent"] == 61.0
    assert a["docker"]["available"] is True and a["version"] and a["last_seen"]
    provider = (await env.http.get(f"/providers/{p['id']}")).json()
    assert provider["agents"] == 1 and provider["locations"] == ["paris"]


async def test_reregistering_reuses_the_identity(env: Env) -> None:
    p = await env.provider()
    agent_id, token = await env.register(p["token"], name="web-1")
    # Lost its state: same name, same provider -> same id, new token, old token revoked.
    again_id, again_token = await env.register(p["token"], name="web-1", location="lyon")
    assert again_id == agent_id and again_token != token
    r = await env.http.post(f"/agents/{agent_id}/heartbeat", json={"host": {"ts": 1, "cpu_percent": 1,
                            "memory_percent": 1}}, headers=bearer(token))  # fmt: skip
    assert r.status_code == 401
    # Renamed machine presenting its previous id keeps it too.
    third_id, _ = await env.register(p["token"], name="renamed", previous_agent_id=agent_id)
    assert third_id == agent_id
    agents = (await env.http.get("/agents")).json()
    assert [(a["id"], a["name"], a["location"]) for a in agents] == [(agent_id, "renamed", "paris")]


async def test_previous_id_of_another_provider_is_not_taken(env: Env) -> None:
    p1, p2 = await env.provider("one"), await env.provider("two")
    first, _ = await env.register(p1["token"], name="h")
    second, _ = await env.register(p2["token"], name="other", previous_agent_id=first)
    assert second != first


async def test_metrics_window_is_bounded_and_filtered(env: Env) -> None:
    p = await env.provider()
    agent_id, token = await env.register(p["token"])
    now = time.time()
    samples = [{"ts": now - 100 + i, "cpu_percent": float(i), "memory_percent": 5.0} for i in range(80)]
    await env.beat(agent_id, token, samples=samples)
    metrics = (await env.http.get(f"/agents/{agent_id}/metrics")).json()
    assert metrics["agent_id"] == agent_id
    assert len(metrics["samples"]) == 50  # samples_window
    ts = [s["ts"] for s in metrics["samples"]]
    assert ts == sorted(ts)
    recent = (await env.http.get(f"/agents/{agent_id}/metrics", params={"seconds": 10})).json()["samples"]
    assert 1 <= len(recent) < 50
    assert all(s["ts"] >= ts[-1] - 10 for s in recent)
    # Samples already kept are not duplicated by a later heartbeat repeating them.
    await env.beat(agent_id, token, samples=samples[-5:])
    again = (await env.http.get(f"/agents/{agent_id}/metrics")).json()["samples"]
    assert len({s["ts"] for s in again}) == len(again)


async def test_health_goes_online_late_offline(start_server: Starter) -> None:
    env = await start_server(late_after=0.6, offline_after=1.2)
    p = await env.provider()
    agent_id, token = await env.register(p["token"])
    await env.beat(agent_id, token)

    async def status() -> str:
        return (await env.http.get(f"/agents/{agent_id}")).json()["status"]  # type: ignore[no-any-return]

    assert await status() == "online"
    await asyncio.sleep(0.8)
    assert await status() == "late"
    await asyncio.sleep(0.6)
    assert await status() == "offline"
    await env.beat(agent_id, token)
    assert await status() == "online"


async def test_delete_agent_revokes_its_token(env: Env) -> None:
    p = await env.provider()
    agent_id, token = await env.register(p["token"])
    assert (await env.http.delete(f"/agents/{agent_id}")).status_code == 204
    assert (await env.http.get("/agents")).json() == []
    r = await env.http.get(f"/agents/{agent_id}/commands", params={"timeout": 0}, headers=bearer(token))
    assert r.status_code == 401


# --- long poll -----------------------------------------------------------------------------------


async def test_long_poll_is_empty_after_its_timeout(env: Env) -> None:
    p = await env.provider()
    agent_id, token = await env.register(p["token"])
    started = time.monotonic()
    r = await env.http.get(f"/agents/{agent_id}/commands", params={"timeout": 0.3}, headers=bearer(token))
    elapsed = time.monotonic() - started
    assert r.status_code == 200 and r.json() == []
    assert 0.25 <= elapsed < 2
    # Without a timeout it waits a random time within the configured range (0.5-1 s here).
    started = time.monotonic()
    r = await env.http.get(f"/agents/{agent_id}/commands", headers=bearer(token))
    assert r.json() == [] and 0.45 <= time.monotonic() - started < 3
    # A timeout beyond the maximum is capped.
    started = time.monotonic()
    r = await env.http.get(f"/agents/{agent_id}/commands", params={"timeout": 60}, headers=bearer(token))
    assert r.json() == [] and time.monotonic() - started < 3


async def test_long_poll_answers_at_once_ack_and_redelivery(start_server: Starter) -> None:
    env = await start_server(redeliver_after=0.5)
    p = await env.provider()
    agent_id, token = await env.register(p["token"])
    await env.beat(agent_id, token)
    url = f"/agents/{agent_id}/commands"
    waiting = asyncio.create_task(env.http.get(url, params={"timeout": 20}, headers=bearer(token)))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    started = time.monotonic()
    r = await env.http.post("/tests", json={"name": "t", "plan": PLAN, "provider": "local", "containers": 1})
    assert r.status_code == 201, r.text
    polled = await asyncio.wait_for(waiting, 5)
    assert time.monotonic() - started < 1.0
    commands = polled.json()
    assert len(commands) == 1 and commands[0]["kind"] == "launch"
    command = commands[0]
    assert command["launch"]["plan"] == PLAN and command["launch"]["shutdown_port"] == 4445
    # Handed out, not acknowledged: not again at once...
    r = await env.http.get(url, params={"timeout": 0.1}, headers=bearer(token))
    assert r.json() == []
    # ...but again with the same id after redeliver_after, or at once on a fresh poll.
    r = await env.http.get(url, params={"timeout": 2}, headers=bearer(token))
    assert [c["id"] for c in r.json()] == [command["id"]]
    r = await env.http.get(url, params={"timeout": 0, "fresh": "true"}, headers=bearer(token))
    assert [c["id"] for c in r.json()] == [command["id"]]
    # Acknowledged: gone for good; a repeated ack is harmless.
    ack = f"{url}/{command['id']}/ack"
    assert (await env.http.post(ack, json={"ok": True}, headers=bearer(token))).status_code == 204
    assert (await env.http.post(ack, json={"ok": True}, headers=bearer(token))).status_code == 204
    r = await env.http.get(url, params={"timeout": 0, "fresh": "true"}, headers=bearer(token))
    assert r.json() == []
    test = (await env.http.get("/tests")).json()[0]
    assert test["containers"][0]["state"] == "starting"


async def test_queued_command_survives_a_restart_with_its_id(tmp_path: Path) -> None:
    settings = ServerSettings(data_dir=tmp_path / "keep", admin_token=ADMIN, flush_interval=0.05)
    first_ids: list[str] = []
    test_id = ""
    token = agent_id = ""
    for round_ in range(2):
        app = create_app(settings)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://test/api/v1", headers=bearer(ADMIN)
            ) as http,
        ):
            env = Env(app, http, settings)
            if round_ == 0:
                p = await env.provider()
                agent_id, token = await env.register(p["token"])
                await env.beat(agent_id, token)
                r = await http.post("/tests", json={"name": "t", "plan": PLAN, "provider": "local", "containers": 1})
                test_id = r.json()["id"]
            r = await http.get(f"/agents/{agent_id}/commands", params={"timeout": 0}, headers=bearer(token))
            assert r.status_code == 200
            ids = [c["id"] for c in r.json()]
            if round_ == 0:
                first_ids = ids
            else:
                assert ids == first_ids and len(ids) == 1
                assert (await http.get(f"/tests/{test_id}")).json()["state"] == "pending"
                assert [a["id"] for a in (await http.get("/agents")).json()] == [agent_id]


# --- bad input -----------------------------------------------------------------------------------


async def test_missing_or_wrong_token_is_401_and_changes_nothing(env: Env) -> None:
    p = await env.provider()
    agent_id, _ = await env.register(p["token"])
    before = await env.snapshot()
    routes = [
        ("GET", "/providers", None), ("POST", "/providers", {"name": "x"}), ("GET", "/agents", None),
        ("GET", f"/agents/{agent_id}/metrics", None), ("DELETE", f"/agents/{agent_id}", None),
        ("POST", f"/agents/{agent_id}/heartbeat", {"host": {"ts": 1, "cpu_percent": 1, "memory_percent": 1}}),
        ("GET", f"/agents/{agent_id}/commands", None), ("POST", "/agents/register", {"name": "h", "location": "x"}),
        ("POST", "/tests", {"name": "t", "plan": PLAN, "provider": "local", "containers": 1}), ("GET", "/info", None),
    ]  # fmt: skip
    for headers in ({"Authorization": ""}, bearer("wrong"), {"Authorization": "Basic abc"}):
        for method, path, body in routes:
            r = await env.http.request(method, path, json=body, headers=headers)
            assert r.status_code == 401, (headers, method, path, r.text)
            assert r.json()["detail"]
            assert r.headers["www-authenticate"] == "Bearer"
    # 401 comes before parsing: a malformed body without token is still 401.
    r = await env.http.post(
        "/providers", content=b"{oops", headers={"Authorization": "", "Content-Type": "application/json"}
    )
    assert r.status_code == 401
    assert await env.snapshot() == before


async def test_wrong_role_is_403_and_changes_nothing(env: Env) -> None:
    p = await env.provider()
    agent_id, agent_token = await env.register(p["token"], name="a1")
    other_id, _ = await env.register(p["token"], name="a2")
    before = await env.snapshot()
    hb = {"host": {"ts": 1, "cpu_percent": 1, "memory_percent": 1}}
    cases = [
        (agent_token, "GET", "/agents", None),
        (agent_token, "GET", "/providers", None),
        (agent_token, "POST", "/providers", {"name": "x"}),
        (agent_token, "DELETE", f"/agents/{other_id}", None),
        (agent_token, "POST", f"/agents/{other_id}/heartbeat", hb),
        (agent_token, "GET", f"/agents/{other_id}/commands", None),
        (agent_token, "POST", "/agents/register", {"name": "h", "location": "x"}),
        (p["token"], "GET", "/agents", None),
        (p["token"], "POST", f"/agents/{agent_id}/heartbeat", hb),
        (ADMIN, "POST", f"/agents/{agent_id}/heartbeat", hb),
        (ADMIN, "POST", "/agents/register", {"name": "h", "location": "x"}),
    ]
    for token, method, path, body in cases:
        r = await env.http.request(method, path, json=body, headers=bearer(token))
        assert r.status_code == 403, (method, path, r.text)
        assert isinstance(r.json()["detail"], str)
    assert await env.snapshot() == before


async def test_malformed_json_and_wrong_types_are_422_and_change_nothing(env: Env) -> None:
    p = await env.provider()
    agent_id, token = await env.register(p["token"])
    await env.beat(agent_id, token)
    before = await env.snapshot()
    json_header = {"Content-Type": "application/json"}
    r = await env.http.post("/providers", content=b'{"name": ', headers=json_header)
    assert r.status_code == 422 and "malformed JSON" in r.json()["detail"][0]["msg"]
    form = {"Content-Type": "application/x-www-form-urlencoded"}  # what `curl -d` sends without -H
    r = await env.http.post("/providers", content=b'{"name": "lab"}', headers=form)
    assert r.status_code == 422 and "Content-Type: application/json" in r.json()["detail"][0]["msg"], r.text
    bad = [
        ("/providers", {"name": 12}),
        ("/providers", {"name": ""}),
        ("/providers", {"name": "ok", "extra": 1}),
        ("/providers", [1, 2]),
        ("/tests", {"name": "t", "plan": PLAN, "provider": "local", "containers": "many"}),
        ("/tests", {"name": "t", "plan": PLAN, "provider": "local", "containers": 0}),
        ("/tests", {"name": "t", "plan": PLAN, "provider": "local", "containers": 1, "users": -1}),
        ("/tests", {"plan": PLAN, "provider": "local", "containers": 1}),
    ]
    for path, body in bad:
        r = await env.http.post(path, json=body)
        assert r.status_code == 422, (path, body, r.text)
        assert r.json()["detail"][0]["msg"]
    r = await env.http.patch(f"/providers/{p['id']}", json={"name": None})
    assert r.status_code == 422
    agent = bearer(token)
    for body in ({"host": {"ts": "now", "cpu_percent": 1, "memory_percent": 1}}, {"host": None}, {}, {"host": 3}):
        r = await env.http.post(f"/agents/{agent_id}/heartbeat", json=body, headers=agent)
        assert r.status_code == 422, body
    r = await env.http.post(f"/agents/{agent_id}/heartbeat", content=b"[", headers={**agent, **json_header})
    assert r.status_code == 422
    r = await env.http.get(f"/agents/{agent_id}/commands", params={"timeout": "soon"}, headers=agent)
    assert r.status_code == 422
    r = await env.http.get(f"/agents/{agent_id}/metrics", params={"seconds": -1})
    assert r.status_code == 422
    r = await env.http.post("/agents/register", json={"name": "x"}, headers=bearer(p["token"]))
    assert r.status_code == 422
    assert await env.snapshot() == before


async def test_unknown_ids_are_404_and_change_nothing(env: Env) -> None:
    p = await env.provider()
    agent_id, token = await env.register(p["token"])
    before = await env.snapshot()
    for method, path, body in [
        ("GET", "/agents/nope", None),
        ("DELETE", "/agents/nope", None),
        ("GET", "/agents/nope/metrics", None),
        ("GET", "/providers/nope", None),
        ("PATCH", "/providers/nope", {"name": "x"}),
        ("DELETE", "/providers/nope", None),
        ("POST", "/providers/nope/rotate-token", None),
        ("GET", "/tests/nope", None),
        ("GET", "/tests/nope/series", None),
        ("POST", "/tests/nope/stop", None),
        ("POST", "/tests/nope/containers/nope/stop", None),
        ("POST", "/tests", {"name": "t", "plan": PLAN, "provider": "nope", "containers": 1}),
    ]:
        r = await env.http.request(method, path, json=body)
        assert r.status_code == 404, (method, path, r.text)
        assert "nope" in r.json()["detail"]
    r = await env.http.post(f"/agents/{agent_id}/commands/nope/ack", json={"ok": True}, headers=bearer(token))
    assert r.status_code == 404
    assert await env.snapshot() == before


async def test_oversized_body_is_413_and_changes_nothing(start_server: Starter) -> None:
    env = await start_server(max_body_bytes=10_000)
    p = await env.provider()
    before = await env.snapshot()
    big_plan = PLAN.replace("<hashTree>", "<hashTree>" + "<!-- x -->" * 2000)
    r = await env.http.post("/tests", json={"name": "t", "plan": big_plan, "provider": p["id"], "containers": 1})
    assert r.status_code == 413 and "larger than" in r.json()["detail"]

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"x" * 1000

    r = await env.http.post("/providers", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert await env.snapshot() == before


async def test_delete_provider_with_live_containers_is_409(env: Env) -> None:
    p = await env.provider()
    agent_id, token = await env.register(p["token"])
    await env.beat(agent_id, token)
    r = await env.http.post("/tests", json={"name": "t", "plan": PLAN, "provider": "local", "containers": 1})
    assert r.status_code == 201
    before = await env.snapshot()
    r = await env.http.delete(f"/providers/{p['id']}")
    assert r.status_code == 409 and "host1" in r.json()["detail"]
    assert await env.snapshot() == before


async def test_plan_limit_is_stated_and_enforced(start_server: Starter) -> None:
    env = await start_server(max_plan_bytes=5_000, max_body_bytes=50_000)
    assert (await env.http.get("/info")).json()["max_plan_bytes"] == 5_000
    p = await env.provider()
    before = await env.snapshot()
    big_plan = PLAN.replace("<hashTree>", "<hashTree>" + "<!-- x -->" * 600)
    r = await env.http.post("/tests", json={"name": "t", "plan": big_plan, "provider": p["id"], "containers": 1})
    assert r.status_code == 413 and "limit of 5000 bytes" in r.json()["detail"]
    r = await env.http.post("/providers", content=b"x" * 60_000, headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert "larger than 50000 bytes" in r.json()["detail"] and "at most 5000 bytes" in r.json()["detail"]
    assert await env.snapshot() == before
