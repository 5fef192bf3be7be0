"""The change feed (``GET /changes``): a mirror built from its deltas equals the full listings after
every kind of change, a restart forces a full resync, bad revisions change nothing, and the
dashboard follows it (or polls the full listings on a server without it)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from octotui.client import Client, ClientError, Mirror
from octotui.protocol import Changes
from octotui.tui.app import DashboardSettings, create_app
from octotui.tui.widgets.tables import AgentsTable
from tests.support.app import ADMIN, Env, Starter
from tests.support.processes import ServerProcess
from tests.support.waiting import wait_until_pilot
from tests.support.wire import ack, bearer, figures, fleet, poll, register, report, spec

ENDED = 2


def client_of(env: Env, token: str = ADMIN) -> Client:
    return Client("http://test", token, transport=httpx.ASGITransport(app=env.app))


async def listings(client: Client, ended: int | None = ENDED) -> tuple[list[Any], list[Any], list[Any]]:
    agents, providers, tests = await asyncio.gather(client.agents(), client.providers(), client.tests(ended=ended))
    return ([a.model_dump() for a in agents], [p.model_dump() for p in providers], [t.model_dump() for t in tests])


async def follow(client: Client, mirror: Mirror) -> Changes:
    """One round of the feed into ``mirror``; then the mirror must equal the full listings."""
    changes = await client.changes(mirror.revision, mirror.epoch, mirror.ended)
    mirror.apply(changes)
    got = ([a.model_dump() for a in mirror.agents], [p.model_dump() for p in mirror.providers],
           [t.model_dump() for t in mirror.tests])  # fmt: skip
    assert got == await listings(client, mirror.ended)
    return changes


async def test_mirror_from_deltas_equals_the_listings_after_every_change(env: Env) -> None:
    client = client_of(env)
    mirror = Mirror(ended=ENDED)
    first = await follow(client, mirror)
    assert first.full and first.revision == 0 and not first.agents

    (a1, t1), (a2, t2) = await fleet(env, "gen-1", "gen-2")
    ch = await follow(client, mirror)
    assert not ch.full and {a.id for a in ch.agents} == {a1, a2} and [p.name for p in ch.providers] == ["local"]

    await env.beat(a1, t1, cpu=55.0)
    ch = await follow(client, mirror)
    assert [a.id for a in ch.agents] == [a1] and not ch.providers and not ch.tests and not ch.containers

    ch = await follow(client, mirror)  # nothing happened
    assert not (ch.agents or ch.providers or ch.tests or ch.containers) and ch.revision == mirror.revision

    provider_id = mirror.providers[0].id
    assert (await env.http.patch(f"/providers/{provider_id}", json={"name": "renamed"})).status_code == 200
    ch = await follow(client, mirror)
    assert [p.name for p in ch.providers] == ["renamed"] and {a.provider_name for a in ch.agents} == {"renamed"}

    # A test of 4 containers: its record comes without them; they come apart, keyed by id.
    test = (await env.http.post("/tests", json=spec(containers=4, provider="renamed"))).json()
    ch = await follow(client, mirror)
    assert [t.id for t in ch.tests] == [test["id"]] and ch.tests[0].containers == []
    assert len(ch.containers) == 4 and {c.test_id for c in ch.containers} == {test["id"]}
    assert [c.index for c in mirror.tests[0].containers] == [0, 1, 2, 3]

    cmds1, cmds2 = await poll(env, a1, t1), await poll(env, a2, t2)
    for cmd in cmds1:
        await ack(env, a1, t1, cmd["id"])
    await env.beat(a1, t1, containers=[report(cmds1[0], "pulling", pull_progress=0.3)])
    ch = await follow(client, mirror)
    changed = {c.id for c in ch.containers}
    assert cmds1[0]["container_id"] in changed and cmds2[0]["container_id"] not in changed
    assert len(changed) <= 2  # acknowledged ones moved to "starting"; the other agent's did not change

    running = [report(cmd, "running", figures=figures(100, 20.0, 12.0)) for cmd in cmds1]
    await env.beat(a1, t1, containers=running)
    for cmd in cmds2:
        await ack(env, a2, t2, cmd["id"])
    await env.beat(a2, t2, containers=[report(cmd, "running", figures=figures(50, 10.0, 8.0)) for cmd in cmds2])
    ch = await follow(client, mirror)
    assert mirror.tests[0].state == "running" and mirror.tests[0].results.samples == 100 * len(cmds1) + 50 * len(cmds2)

    # One container's figures change: its test's summary and that container only.
    await env.beat(a1, t1, containers=[report(cmds1[0], "running", figures=figures(150, 20.0, 12.0)), *running[1:]])
    ch = await follow(client, mirror)
    assert [t.containers for t in ch.tests] == [[]] and len(ch.containers) == len(cmds1)

    victim = cmds2[0]["container_id"]
    assert (await env.http.post(f"/tests/{test['id']}/containers/{victim}/stop")).status_code == 200
    await follow(client, mirror)
    assert {c.id: c.state for c in mirror.tests[0].containers}[victim] == "stopping"

    assert (await env.http.post(f"/tests/{test['id']}/stop")).status_code == 200
    await follow(client, mirror)
    done = [report(cmd, "finished", exit_code=0) for cmd in cmds1]
    await env.beat(a1, t1, containers=done)
    await env.beat(a2, t2, containers=[report(cmd, "finished", exit_code=0) for cmd in cmds2])
    await follow(client, mirror)
    ended = mirror.test(test["id"])
    assert ended is not None and ended.state == "finished" and ended.results.final

    # Re-registered under another name and location: its containers show the new ones.
    r = await env.http.post("/agents/register", json={"name": "gen-1b", "location": "lyon", "previous_agent_id": a1},
                            headers=bearer(env.provider_tokens[mirror.providers[0].id]))  # fmt: skip
    assert r.status_code == 200, r.text
    await follow(client, mirror)
    assert {c.agent_name for c in mirror.tests[0].containers if c.agent == a1} == {"gen-1b"}

    assert (await env.http.delete(f"/agents/{a2}")).status_code == 204
    ch = await follow(client, mirror)
    assert ch.removed_agents == [a2] and [a.id for a in mirror.agents] == [a1]
    assert mirror.providers[0].agents == 1

    other = (await env.http.post("/providers", json={"name": "spare"})).json()
    spare, _ = await env.register(other["token"], name="spare-1")
    await follow(client, mirror)
    assert [p.agents for p in mirror.providers] == [1, 1]
    assert (await env.http.delete(f"/providers/{other['id']}")).status_code == 204
    ch = await follow(client, mirror)
    assert ch.removed_providers == [other["id"]] and ch.removed_agents == [spare]
    assert [p.name for p in mirror.providers] == ["renamed"] and [a.id for a in mirror.agents] == [a1]

    # Renamed again: its tests, ended ones too, show the name it has now.
    assert (await env.http.patch(f"/providers/{provider_id}", json={"name": "paris"})).status_code == 200
    ch = await follow(client, mirror)
    assert {t.provider_name for t in ch.tests} == {"paris"} and test["id"] in {t.id for t in ch.tests}
    assert {t.provider_name for t in mirror.tests} == {"paris"}


async def test_the_mirror_keeps_only_the_newest_ended_tests(env: Env) -> None:
    client = client_of(env)
    mirror = Mirror(ended=ENDED)
    await fleet(env, "gen-1")
    await follow(client, mirror)
    for n in range(ENDED + 2):
        test = (await env.http.post("/tests", json=spec(name=f"run-{n}", containers=1))).json()
        await follow(client, mirror)
        assert (await env.http.post(f"/tests/{test['id']}/stop")).status_code == 200
        await follow(client, mirror)
    assert [t.name for t in mirror.tests] == [f"run-{n}" for n in range(2, ENDED + 2)]
    # A mirror that keeps every test sees them all.
    everything = Mirror()
    everything.apply(await client.changes())
    assert len(everything.tests) == ENDED + 2


async def test_status_changes_by_age_reach_the_mirror(start_server: Starter) -> None:
    env = await start_server(late_after=0.4, offline_after=0.8)
    client = client_of(env)
    mirror = Mirror(ended=ENDED)
    [(a1, t1)] = await fleet(env, "gen-1")
    await follow(client, mirror)
    assert mirror.agents[0].status == "online"
    await asyncio.sleep(1.0)  # no heartbeat: late, then offline
    ch = await follow(client, mirror)
    assert [a.status for a in ch.agents] == ["offline"] and [a.status for a in mirror.agents] == ["offline"]
    await env.beat(a1, t1)
    await follow(client, mirror)
    assert mirror.agents[0].status == "online"


async def test_bad_revisions_are_refused_or_answered_in_full(env: Env) -> None:
    await fleet(env, "gen-1")
    client = client_of(env)
    now = await client.changes()
    before = await env.snapshot()
    for bad in ({"since": -1}, {"since": "abc"}, {"since": "1.5"}, {"since": 2**63}, {"ended": -1},
                   {"epoch": "x" * 65}):  # fmt: skip
        r = await env.http.get("/changes", params=bad)
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["detail"]
    for since, epoch in ((now.revision + 1000, now.epoch), (0, "another-epoch"), (now.revision, None)):
        params: dict[str, Any] = {"since": since} | ({"epoch": epoch} if epoch else {})
        r = await env.http.get("/changes", params=params)
        assert r.status_code == 200, r.text
        answer = Changes.model_validate(r.json())
        assert answer.full and answer.epoch == now.epoch and len(answer.agents) == 1
    assert await env.snapshot() == before
    unchanged = await client.changes(now.revision, now.epoch)
    assert not unchanged.full and unchanged.revision == now.revision


async def test_read_only_tokens_read_the_feed_without_secrets(env: Env) -> None:
    await fleet(env, "gen-1")
    created = (await env.http.post("/tokens", json={"name": "watcher", "role": "read-only"})).json()
    reader = client_of(env, created["token"])
    answer = await reader.changes()
    assert answer.full and len(answer.agents) == 1 and [p.token for p in answer.providers] == [""]
    admin = await client_of(env).changes()
    assert [p.token for p in admin.providers] == [""], "kept hashed: not even an admin reads it back"
    r = await env.http.get("/changes", headers=bearer("not-a-token"))
    assert r.status_code == 401


def test_a_restart_changes_the_epoch_and_resyncs_in_full(server: ServerProcess) -> None:
    async def scenario() -> None:
        async with Client(server.url, server.admin_token, timeout=10) as client:
            mirror = Mirror(ended=ENDED)
            mirror.apply(await client.changes())
            with server.client() as http:
                http.post("/providers", json={"name": "lab"}).raise_for_status()
            ch = await client.changes(mirror.revision, mirror.epoch, ENDED)
            mirror.apply(ch)
            assert not ch.full and [p.name for p in mirror.providers] == ["lab"]
            old_epoch = mirror.epoch
            await asyncio.to_thread(server.restart)
            with server.client() as http:
                http.post("/providers", json={"name": "lab2"}).raise_for_status()
            ch = await client.changes(mirror.revision, mirror.epoch, ENDED)
            assert ch.full and ch.epoch != old_epoch
            mirror.apply(ch)
            assert [p.model_dump() for p in mirror.providers] == [p.model_dump() for p in await client.providers()]
            assert [p.name for p in mirror.providers] == ["lab", "lab2"]

    asyncio.run(scenario())


async def _beat(http: httpx.AsyncClient, agent_id: str, token: str, cpu: float) -> None:
    host = {"ts": time.time(), "cpu_percent": cpu, "memory_percent": 20.0}
    r = await http.post(f"/agents/{agent_id}/heartbeat", json={"host": host}, headers=bearer(token))
    r.raise_for_status()


async def test_dashboard_follows_the_feed(tmp_path: Path) -> None:
    # Long health thresholds: no row may change by age while the test looks at them.
    server = ServerProcess(tmp_path / "server", "--late-after", "60", "--offline-after", "120").start()
    try:
        await _follows(server)
    finally:
        server.stop()


async def _follows(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url + "/api/v1", headers=bearer(server.admin_token)) as http:
        provider = (await http.post("/providers", json={"name": "lab"})).json()
        box1 = await register(http, provider["token"], "box1")
        box2 = await register(http, provider["token"], "box2")
        await _beat(http, *box1, cpu=11.0)
        await _beat(http, *box2, cpu=22.0)
        settings = DashboardSettings(server=server.url, token=server.admin_token, refresh=0.3)
        app = create_app(settings, Client(server.url, server.admin_token, timeout=5))
        messages: list[Any] = []
        async with app.run_test(size=(120, 30), message_hook=messages.append) as pilot:
            await wait_until_pilot(pilot, lambda: len(app.agents) == 2, timeout=20)
            assert app.poller.feed is True
            table = app.screen.query_one(AgentsTable)
            before = {key: table.row_cells(key) or () for key in (box1[0], box2[0])}
            await _beat(http, *box1, cpu=77.0)
            await wait_until_pilot(
                pilot, lambda: (table.row_cells(box1[0]) or ())[4:5] != before[box1[0]][4:5], timeout=20
            )
            cells = table.row_cells(box1[0])
            assert cells is not None and cells[4].text == "77.0"
            assert table.row_cells(box2[0]) is before[box2[0]]  # untouched: the same row object
            hinted = [m.changed for m in messages if type(m).__name__ == "AgentsUpdated"]
            assert hinted[0] is None and frozenset({box1[0]}) in hinted
            expected = [a.model_dump() for a in await Client(server.url, server.admin_token).agents()]
            assert [a.model_dump() for a in app.agents] == expected


async def test_dashboard_polls_the_listings_on_a_server_without_the_feed(start_server: Starter) -> None:
    env = await start_server()
    await fleet(env, "gen-1", "gen-2")

    async def older_server(scope: Scope, receive: Receive, send: Send) -> None:
        """The real server, as a release from before the feed answers its path: 404."""
        if scope["type"] == "http" and scope["path"] == "/api/v1/changes":
            await JSONResponse({"detail": "Not Found"}, status_code=404)(scope, receive, send)
            return
        await env.app(scope, receive, send)

    client = Client("http://test", ADMIN, transport=httpx.ASGITransport(app=older_server))
    with pytest.raises(ClientError) as refused:
        await client.changes()
    assert refused.value.status == 404
    settings = DashboardSettings(server="http://test", token=ADMIN, refresh=0.3)
    app = create_app(settings, client)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_until_pilot(pilot, lambda: len(app.agents) == 2 and app.providers, timeout=20)
        assert app.poller.feed is False
        assert {a.name for a in app.agents} == {"gen-1", "gen-2"}


@pytest.mark.parametrize("ended", [None, 0])
async def test_full_state_lists_tests_as_the_listing_does(env: Env, ended: int | None) -> None:
    await fleet(env, "gen-1")
    test = (await env.http.post("/tests", json=spec(containers=2))).json()
    assert (await env.http.post(f"/tests/{test['id']}/stop")).status_code == 200
    client = client_of(env)
    mirror = Mirror(ended=ended)
    mirror.apply(await client.changes(ended=ended))
    assert [t.model_dump() for t in mirror.tests] == [t.model_dump() for t in await client.tests(ended=ended)]
