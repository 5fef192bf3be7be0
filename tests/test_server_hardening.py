"""Issue 10, server side: stop means stop, nothing half-made reaches memory, busy agents are not
deleted under their tests, agents keep their own identities, odd bodies get clear answers.

Through the real app (httpx.ASGITransport + its lifespan); agents speak the wire protocol here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from octotui.protocol import TestCreate
from octotui.server.app import create_app
from octotui.server.errors import Unstorable
from octotui.server.settings import ServerSettings
from tests.support.app import ADMIN, Env, Starter
from tests.support.waiting import wait_until_async
from tests.support.wire import PLAN, ack, bearer, fleet, poll, report, spec


async def get_test(env: Env, test_id: str) -> dict[str, Any]:
    r = await env.http.get(f"/tests/{test_id}")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


# --- 1. stop means stop --------------------------------------------------------------------------


async def test_every_heartbeat_repeats_the_stop_until_the_container_ended(env: Env) -> None:
    (a1, t1), (a2, t2) = await fleet(env, "gen-1", "gen-2")
    test = (await env.http.post("/tests", json=spec(containers=4))).json()
    cmds = {a1: await poll(env, a1, t1), a2: await poll(env, a2, t2)}
    for agent, token in ((a1, t1), (a2, t2)):
        for cmd in cmds[agent]:
            await ack(env, agent, token, cmd["id"])
    # gen-1's containers run, gen-2's are still starting when the stop comes.
    reports = {
        a1: [report(c, "running", docker_id=f"d-{c['container_id']}") for c in cmds[a1]],
        a2: [report(c, "starting") for c in cmds[a2]],
    }
    for agent, token in ((a1, t1), (a2, t2)):
        await env.beat(agent, token, containers=reports[agent])
    assert (await env.http.post(f"/tests/{test['id']}/stop")).status_code == 200
    # The agents go on reporting them live (the stop raced a start): every heartbeat says stop.
    for _ in range(3):
        for agent, token in ((a1, t1), (a2, t2)):
            answer = await env.beat(agent, token, containers=reports[agent])
            assert sorted(answer["stop"]) == sorted(c["container_id"] for c in cmds[agent])
    assert (await get_test(env, test["id"]))["state"] == "stopping"
    # Confirmed ended: no more stops, and the test ends.
    for agent, token in ((a1, t1), (a2, t2)):
        done = [report(c, "finished", exit_code=0) for c in cmds[agent]]
        answer = await env.beat(agent, token, containers=done)
        assert answer["stop"] == []
    assert (await get_test(env, test["id"]))["state"] == "finished"


async def test_a_container_taken_back_during_a_stop_is_stopped(start_server: Starter) -> None:
    env = await start_server(offline_after=0.6, late_after=0.3)
    ((a1, t1),) = await fleet(env, "gen-1")
    test = (await env.http.post("/tests", json=spec(containers=1))).json()
    (cmd,) = await poll(env, a1, t1)
    await ack(env, a1, t1, cmd["id"])
    await env.beat(a1, t1, containers=[report(cmd, "running", docker_id="d1")])

    async def lost() -> bool:
        return bool((await get_test(env, test["id"]))["containers"][0]["state"] == "lost")

    await wait_until_async(lost, timeout=5, interval=0.05, what="the container lost with its agent")
    assert "went offline" in (await get_test(env, test["id"]))["containers"][0]["error"]
    await env.http.post(f"/tests/{test['id']}/stop")
    # It comes back, still running it: stopped, and the stale error is gone.
    answer = await env.beat(a1, t1, containers=[report(cmd, "running", docker_id="d1")])
    assert answer["stop"] == [cmd["container_id"]]
    container = (await get_test(env, test["id"]))["containers"][0]
    assert container["state"] == "stopping" and container["error"] is None


async def test_stop_of_a_delivered_launch_queues_a_stop(env: Env) -> None:
    ((a1, t1),) = await fleet(env, "gen-1")
    test = (await env.http.post("/tests", json=spec(containers=1))).json()
    (launch,) = await poll(env, a1, t1)  # handed out, not acknowledged yet
    await env.http.post(f"/tests/{test['id']}/stop")
    (stop,) = await poll(env, a1, t1)
    assert stop["kind"] == "stop" and stop["container_id"] == launch["container_id"]
    # The agent refuses the launch it was told to stop, and never reports the container.
    await ack(env, a1, t1, launch["id"], ok=False, error="stopped before it started")
    await ack(env, a1, t1, stop["id"])
    test = await get_test(env, test["id"])
    assert test["state"] == "finished" and test["containers"][0]["state"] == "failed"


async def test_a_repeated_stop_hands_the_stop_out_again(env: Env) -> None:
    ((a1, t1),) = await fleet(env, "gen-1")
    test = (await env.http.post("/tests", json=spec(containers=2))).json()
    launches = await poll(env, a1, t1)
    for cmd in launches:
        await ack(env, a1, t1, cmd["id"])
    await env.beat(a1, t1, containers=[report(c, "running") for c in launches])
    await env.http.post(f"/tests/{test['id']}/stop")
    first = await poll(env, a1, t1)
    assert sorted(c["kind"] for c in first) == ["stop", "stop"]
    assert await poll(env, a1, t1) == []  # handed out: not again before redeliver_after (30 s)
    # The operator presses stop again: the same stops come out at once.
    r = await env.http.post(f"/tests/{test['id']}/stop")
    assert r.status_code == 200 and r.json()["state"] == "stopping"
    again = await poll(env, a1, t1)
    assert sorted(c["id"] for c in again) == sorted(c["id"] for c in first)
    # Stop of one container: its stop again, acknowledged or not.
    for cmd in again:
        await ack(env, a1, t1, cmd["id"])
    one = launches[0]["container_id"]
    r = await env.http.post(f"/tests/{test['id']}/containers/{one}/stop")
    assert r.status_code == 200
    (resent,) = await poll(env, a1, t1)
    assert resent["kind"] == "stop" and resent["container_id"] == one


async def test_a_stop_not_confirmed_in_time_is_named_in_the_reason(start_server: Starter) -> None:
    env = await start_server(stop_deadline=0.3)
    (a1, t1), (a2, t2) = await fleet(env, "gen-1", "gen-2")
    test = (await env.http.post("/tests", json=spec(containers=2))).json()
    cmds = {a1: await poll(env, a1, t1), a2: await poll(env, a2, t2)}
    for agent, token in ((a1, t1), (a2, t2)):
        await ack(env, agent, token, cmds[agent][0]["id"])
        await env.beat(agent, token, containers=[report(cmds[agent][0], "running")])
    await env.http.post(f"/tests/{test['id']}/stop")
    # gen-2 confirms; gen-1 keeps reporting its container running.
    await env.beat(a2, t2, containers=[report(cmds[a2][0], "finished", exit_code=0)])

    async def named() -> bool:
        await env.beat(a1, t1, containers=[report(cmds[a1][0], "running")])
        return "not confirmed" in ((await get_test(env, test["id"]))["reason"] or "")

    await wait_until_async(named, timeout=5, interval=0.05, what="the late stop in the test's reason")
    now = await get_test(env, test["id"])
    assert now["state"] == "stopping"
    reason = now["reason"]
    assert reason.startswith("stopped by") and "gen-1" in reason and a1 in reason and "since" in reason
    assert "gen-2" not in reason
    # Confirmed at last: the test ends, its reason without the late stop.
    await env.beat(a1, t1, containers=[report(cmds[a1][0], "finished", exit_code=0)])
    ended = await get_test(env, test["id"])
    assert ended["state"] == "finished" and "not confirmed" not in (ended["reason"] or "")


# --- 2. nothing reaches memory before the store accepted it --------------------------------------

BAD = "\udc80"  # a lone surrogate: pydantic takes it, SQLite cannot encode it


async def test_a_test_the_store_refuses_leaves_nothing_behind(env: Env) -> None:
    ((a1, t1),) = await fleet(env, "gen-1")
    before = await env.snapshot()
    # Past the contract's edge (its validation may refuse it there first): the store must hold anyway.
    body = TestCreate.model_validate(spec(containers=2))
    body.properties["host"] = BAD
    with pytest.raises(Unstorable, match="not valid Unicode"):
        await env.ctl.create_test(body)
    raw = json.dumps(spec(containers=2, properties={"host": BAD}))  # ASCII: the escape "\\udc80" on the wire
    r = await env.http.post("/tests", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert await env.snapshot() == before
    assert (await env.http.get("/changes")).status_code == 200
    assert await poll(env, a1, t1) == []
    # The agent's next test goes through untouched.
    r = await env.http.post("/tests", json=spec(containers=1))
    assert r.status_code == 201, r.text
    (launch,) = await poll(env, a1, t1)
    assert launch["test_id"] == r.json()["id"]


async def test_one_unstorable_record_does_not_lose_the_other_changes(env: Env) -> None:
    (a1, t1), (a2, t2) = await fleet(env, "gen-1", "gen-2")
    test = (await env.http.post("/tests", json=spec(containers=2))).json()
    c1, c2 = await poll(env, a1, t1), await poll(env, a2, t2)
    await env.ctl.flush()
    # gen-1's container gets an error text that slipped through; gen-2's runs, in the same batch.
    env.ctl.containers[c1[0]["container_id"]].error = "engine said " + BAD
    env.ctl._dirty_containers.add(c1[0]["container_id"])
    await ack(env, a2, t2, c2[0]["id"])
    await env.beat(a2, t2, containers=[report(c2[0], "running", docker_id="d2")])
    await env.ctl.flush()
    with sqlite3.connect(env.settings.db_path) as db:
        rows = dict(db.execute("SELECT id, state FROM containers").fetchall())
        queued = [row[0] for row in db.execute("SELECT id FROM commands")]
    assert rows[c2[0]["container_id"]] == "running"
    assert c2[0]["id"] not in queued  # its acknowledged launch is gone from the store too
    # The listings answer for everyone, the bad text shown as '?'.
    r = await env.http.get("/tests")
    assert r.status_code == 200 and "engine said ?" in r.text
    assert (await env.http.get(f"/tests/{test['id']}")).status_code == 200
    assert (await env.http.get("/changes")).status_code == 200


async def test_a_store_that_fails_keeps_the_changes_for_the_next_flush(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    ((a1, t1),) = await fleet(env, "gen-1")
    await env.http.post("/tests", json=spec(containers=1))
    (cmd,) = await poll(env, a1, t1)
    await env.ctl.flush()
    real = env.ctl.store.save_changes
    calls = 0

    async def fails_once(*args: Any, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise sqlite3.OperationalError("database or disk is full")
        await real(*args, **kwargs)

    monkeypatch.setattr(env.ctl.store, "save_changes", fails_once)
    await ack(env, a1, t1, cmd["id"])
    await env.beat(a1, t1, containers=[report(cmd, "running", docker_id="d1")])
    with contextlib.suppress(sqlite3.OperationalError):
        await env.ctl.flush()

    def stored() -> bool:
        with sqlite3.connect(env.settings.db_path) as db:
            (state,) = db.execute("SELECT state FROM containers WHERE id = ?", (cmd["container_id"],)).fetchone()
            return bool(state == "running")

    await wait_until_async(
        lambda: asyncio.sleep(0, stored()), timeout=5, interval=0.05, what="the change written by a later flush"
    )
    assert calls >= 2


# --- 3. a busy agent is not deleted under its tests ----------------------------------------------


async def running(env: Env, agent: str, token: str, n: int = 1) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A test of ``n`` containers on ``agent``, launched, acknowledged and reported running."""
    test = (await env.http.post("/tests", json=spec(name="soak", containers=n))).json()
    cmds = await poll(env, agent, token)
    for cmd in cmds:
        await ack(env, agent, token, cmd["id"])
    await env.beat(agent, token, containers=[report(c, "running", docker_id="d" + c["container_id"]) for c in cmds])
    return test, cmds


async def test_deleting_a_busy_agent_is_409_naming_its_tests(env: Env) -> None:
    ((a1, t1),) = await fleet(env, "gen-1")
    test, _ = await running(env, a1, t1)
    before = await env.snapshot()
    r = await env.http.delete(f"/agents/{a1}")
    assert r.status_code == 409, r.text
    assert "'soak'" in r.json()["detail"] and test["id"] in r.json()["detail"] and "force" in r.json()["detail"]
    assert await env.snapshot() == before


async def test_a_forced_delete_stops_collects_results_then_forgets(env: Env) -> None:
    ((a1, t1),) = await fleet(env, "gen-1")
    test, cmds = await running(env, a1, t1, n=2)
    r = await env.http.delete(f"/agents/{a1}", params={"force": "true"})
    assert r.status_code == 202, r.text
    # Kept while its containers stop: stops queued and repeated by heartbeats; no new placement.
    assert sorted(c["kind"] for c in await poll(env, a1, t1)) == ["stop", "stop"]
    live = [report(c, "running", docker_id="d" + c["container_id"]) for c in cmds]
    assert len((await env.beat(a1, t1, containers=live))["stop"]) == 2
    assert [a["id"] for a in (await env.http.get("/agents")).json()] == [a1]
    assert (await env.http.post("/tests", json=spec(containers=1))).status_code == 409
    # Its containers end with their final results: kept on the test; the agent forgotten, its token revoked.
    final = {"samples": 150, "errors": 0, "avg_ms": 12.0, "min_ms": 1, "max_ms": 40, "duration_s": 5.0}
    await env.beat(a1, t1, containers=[report(c, "finished", exit_code=0, final=final) for c in cmds])

    async def forgotten() -> bool:
        return bool((await env.http.get("/agents")).json() == [])

    await wait_until_async(forgotten, timeout=5, interval=0.05, what="the retired agent forgotten")
    r = await env.http.get(f"/agents/{a1}/commands", params={"timeout": 0}, headers=bearer(t1))
    assert r.status_code == 401
    ended = await get_test(env, test["id"])
    assert ended["state"] == "finished" and ended["results"]["samples"] == 300


async def test_a_forced_delete_of_an_offline_agent_forgets_it_at_once(env: Env) -> None:
    ((a1, t1),) = await fleet(env, "gen-1")
    test, _ = await running(env, a1, t1)
    # As after a server restart: its last heartbeat is old (offline), its containers not yet lost
    # (the agent gets offline_after seconds to come back).
    env.ctl.agents[a1].last_seen = time.time() - 3600
    assert (await env.http.get(f"/agents/{a1}")).json()["status"] == "offline"
    assert (await env.http.delete(f"/agents/{a1}")).status_code == 409
    assert (await env.http.delete(f"/agents/{a1}", params={"force": "true"})).status_code == 204
    assert (await env.http.get("/agents")).json() == []
    container = (await get_test(env, test["id"]))["containers"][0]
    assert container["state"] == "lost" and "deleted" in container["error"]


# --- 8. a plan is stored once per test; the database stays bounded -------------------------------


async def test_a_big_plan_on_many_containers_is_stored_once(start_server: Starter) -> None:
    env = await start_server(container_memory=1024 * 1024, checkpoint_interval=0.2)
    agents = await fleet(env, "gen-1", "gen-2")
    db = env.settings.db_path
    wal = db.with_name(db.name + "-wal")

    def size() -> int:
        return db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)

    await env.ctl.store.checkpoint()
    before = size()
    padding = "<!-- " + "x" * (1024 * 1024) + " -->"
    plan = PLAN.replace("<hashTree>", padding + "<hashTree>", 1)
    r = await env.http.post("/tests", json=spec(containers=40, plan=plan))
    assert r.status_code == 201, r.text
    for agent, token in agents:  # every launch handed out with the whole plan
        launches = await poll(env, agent, token)
        assert len(launches) == 20 and all(c["launch"]["plan"] == plan for c in launches)
    grown = size() - before
    assert grown < 3 * 1024 * 1024, f"the database grew by {grown / 1024 / 1024:.1f} MiB for one 1 MiB plan"
    # The write-ahead log is emptied by the periodic checkpoint: what stays is the database.
    await wait_until_async(
        lambda: asyncio.sleep(0, not wal.exists() or wal.stat().st_size == 0),
        timeout=5,
        interval=0.05,
        what="an empty WAL",
    )
    assert size() - before < 1.5 * 1024 * 1024


# --- 10. an agent's identity is its state dir's, not its name ------------------------------------


async def test_two_agents_of_one_name_keep_two_identities(env: Env) -> None:
    p = await env.provider()
    token = p["token"]
    first = await env.register(token, name="host", instance="inst-aaaa")
    second = await env.register(token, name="host", instance="inst-bbbb")
    assert first[0] != second[0]
    # They restart over and over (each with its own state dir): each keeps its own id.
    for _ in range(3):
        assert (await env.register(token, name="host", instance="inst-aaaa"))[0] == first[0]
        assert (await env.register(token, name="host", instance="inst-bbbb"))[0] == second[0]
    # Naming the other's id does not take it; an agent without an instance (older) is a third.
    stolen = await env.register(token, name="host", instance="inst-bbbb", previous_agent_id=first[0])
    assert stolen[0] == second[0]
    old = await env.register(token, name="host")
    assert old[0] not in (first[0], second[0])
    assert (await env.register(token, name="host"))[0] == old[0]  # older agents: by name, as before
    agents = (await env.http.get("/agents")).json()
    assert len(agents) == 3 and all(a["duplicate_name"] for a in agents)
    # Renamed, it is flagged no more; the last other of its name neither, and the feed says so.
    await env.register(token, name="other-host", instance="inst-aaaa")
    assert not (await env.http.get(f"/agents/{first[0]}")).json()["duplicate_name"]
    revision = (await env.http.get("/changes")).json()
    assert (await env.http.delete(f"/agents/{old[0]}")).status_code == 204
    since = {"since": revision["revision"], "epoch": revision["epoch"]}
    changes = (await env.http.get("/changes", params=since)).json()
    assert {a["id"]: a["duplicate_name"] for a in changes["agents"]} == {second[0]: False}


async def test_an_instance_survives_a_server_restart(tmp_path: Path) -> None:
    settings = ServerSettings(data_dir=tmp_path / "keep", admin_token=ADMIN, flush_interval=0.05)
    ids: list[str] = []
    token = ""
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
                token = (await env.provider())["token"]
            ids.append((await env.register(token, name="host", instance="inst-aaaa"))[0])
            if round_ == 1:
                assert (await env.register(token, name="host", instance="inst-bbbb"))[0] != ids[0]
    assert ids[0] == ids[1]


# --- 9. odd bodies, cut polls, stale errors ------------------------------------------------------


async def test_a_body_that_is_not_utf8_is_told_so(env: Env) -> None:
    p = await env.provider()
    before = await env.snapshot()
    body = b'{"name": "caf\xe9", "location": "paris"}'  # Latin-1, not UTF-8
    for path, headers in (("/providers", {}), ("/agents/register", bearer(p["token"]))):
        r = await env.http.post(path, content=body, headers={"Content-Type": "application/json", **headers})
        assert r.status_code == 400, r.text
        assert r.json()["detail"].startswith("the body is not valid UTF-8 JSON"), r.text
    assert await env.snapshot() == before


async def cut_poll(env: Env, agent_id: str, token: str, query: bytes) -> list[dict[str, Any]]:
    """A long poll whose client goes away after 0.2 s, straight through the app: what it sent."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": f"/api/v1/agents/{agent_id}/commands", "raw_path": b"", "root_path": "", "query_string": query,
        "headers": [(b"authorization", f"Bearer {token}".encode()), (b"host", b"test")],
        "client": ("127.0.0.1", 5000), "server": ("test", 80),
    }  # fmt: skip
    sent: list[dict[str, Any]] = []
    calls = 0

    async def receive() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(0.2)
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    await asyncio.wait_for(env.app(scope, receive, send), 5)
    return sent


async def test_a_long_poll_cut_by_its_client_ends_quietly(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    p = await env.provider()
    agent_id, token = await env.register(p["token"])
    # Through the agents' fast path, and through FastAPI's route (a query the fast path leaves to it).
    for query in (b"timeout=20", b"timeout=20.0000001&fresh=no"):
        started = time.monotonic()
        sent = await cut_poll(env, agent_id, token, query)
        assert time.monotonic() - started < 3
        assert sent and sent[0]["status"] == 200
    assert "InvalidStateError" not in caplog.text


async def test_a_container_taken_back_loses_its_stale_error(start_server: Starter) -> None:
    env = await start_server(offline_after=0.6, late_after=0.3)
    ((a1, t1),) = await fleet(env, "gen-1")
    test = (await env.http.post("/tests", json=spec(containers=1))).json()
    (cmd,) = await poll(env, a1, t1)
    await ack(env, a1, t1, cmd["id"])
    await env.beat(a1, t1, containers=[report(cmd, "running", docker_id="d1")])

    async def lost() -> bool:
        return bool((await get_test(env, test["id"]))["containers"][0]["state"] == "lost")

    await wait_until_async(lost, timeout=5, interval=0.05, what="the container lost with its agent")
    await env.beat(a1, t1, containers=[report(cmd, "running", docker_id="d1")])
    container = (await get_test(env, test["id"]))["containers"][0]
    assert container["state"] == "running" and container["error"] is None
