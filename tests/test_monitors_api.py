"""Monitors through the real app (httpx.ASGITransport, lifespan included) with wire-level agents:
write-only credentials, roles, validation, assignments by revision, ingest, restart."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest

from octotui.client import Client, ClientError
from octotui.protocol import MonitorCreate, MonitorUpdate
from tests.support import wire
from tests.support.app import ADMIN, Env, Starter
from tests.support.labelkit import serving
from tests.support.monitorkit import (
    PASSWORD,
    beat_monitors,
    create,
    fleet,
    mreport,
    prom_body,
    readable,
    sample,
    ssh_body,
)
from tests.support.waiting import wait_until_async
from tests.support.wire import PLAN, bearer

# --- Credentials are write-only: set, listed by name, sent to their agent only, encrypted at rest.


async def test_never_shown_logged_audited_or_stored_in_clear(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    [(agent, token)] = await fleet(env, "gen1")
    m = await create(env, ssh_body(agent))
    assert m["credentials_set"] == ["password", "username"]
    r = await env.http.patch(f"/monitors/{m['id']}", json={"interval": 10})
    assert r.status_code == 200, r.text
    answers = [r.text]
    for path in ("/monitors", f"/monitors/{m['id']}", "/audit", "/alarms", "/openapi.json"):
        answers.append((await env.http.get(path)).text)
    assert all(PASSWORD not in text for text in answers)
    audit = (await env.http.get("/audit")).json()
    assert [e["action"] for e in audit[:2]] == ["monitor.update", "monitor.create"]
    assert "credentials=password,username" in audit[1]["detail"]
    # Only its agent gets them, in a heartbeat answer.
    answer = await beat_monitors(env, agent, token)
    assert answer["monitors"][0]["credentials"]["password"] == PASSWORD
    assert PASSWORD not in caplog.text
    await env.ctl.store.checkpoint()
    data = env.settings.db_path.read_bytes()
    assert b"monitor" in data and PASSWORD.encode() not in data
    key = env.settings.data_dir / "monitors.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert key.read_bytes().strip() not in data


async def test_read_only_reads_monitors_and_values_but_writes_nothing(env: Env) -> None:
    [(agent, token)] = await fleet(env, "gen1")
    m = await create(env, ssh_body(agent))
    answer = await beat_monitors(env, agent, token)
    await beat_monitors(env, agent, token, answer["monitor_revision"], [mreport(m["id"], sample(100.0, load1=0.5))])
    watcher = bearer(await env.ctl.add_operator_token("read-only", "watcher"))
    r = await env.http.get(f"/monitors/{m['id']}", headers=watcher)
    assert r.status_code == 200 and r.json()["last_values"] == {"load1": 0.5}
    assert PASSWORD not in r.text and r.json()["credentials_set"] == ["password", "username"]
    before = await readable(env)
    for method, path, body in (
        ("POST", "/monitors", ssh_body(agent, name="other")),
        ("PATCH", f"/monitors/{m['id']}", {"interval": 30}),
        ("DELETE", f"/monitors/{m['id']}", None),
    ):
        r = await env.http.request(method, path, json=body, headers=watcher)
        assert r.status_code == 403, (method, path, r.text)
    # An agent's own token reads no monitor (it gets its own through its heartbeats).
    assert (await env.http.get("/monitors", headers=bearer(token))).status_code == 403
    assert await readable(env) == before


async def test_a_database_without_its_key_file_says_so_for_those_monitors(tmp_path: Path) -> None:
    async with serving(tmp_path / "d") as env:
        [(agent, token)] = await fleet(env, "gen1")
        ssh = await create(env, ssh_body(agent))
        prom = await create(env, prom_body(agent))
    (tmp_path / "d" / "monitors.key").unlink()
    async with serving(tmp_path / "d") as env:
        await beat_monitors(env, agent, token)
        got = (await env.http.get(f"/monitors/{ssh['id']}")).json()
        assert got["state"] == "error" and "key file" in got["error"] and "missing" in got["error"]
        assert (await env.http.get(f"/monitors/{prom['id']}")).json()["state"] == "pending"
        answer = await beat_monitors(env, agent, token)
        assert [a["id"] for a in answer["monitors"]] == [prom["id"]]
        # Setting the credentials again makes a new key and the monitor runs again.
        r = await env.http.patch(f"/monitors/{ssh['id']}", json={"credentials": {"username": "u", "password": "p"}})
        assert r.status_code == 200 and r.json()["state"] == "pending", r.text
        answer = await beat_monitors(env, agent, token, answer["monitor_revision"])
        assert sorted(a["id"] for a in answer["monitors"]) == sorted([ssh["id"], prom["id"]])


# --- Stored credentials never follow a monitor to another host or agent unless given again.

MOVES: list[tuple[str, dict[str, Any]]] = [
    ("another host", {"target": "127.0.0.2:2222"}),
    ("another port", {"target": "127.0.0.1:22"}),
    ("the host spelled another way", {"target": "localhost:2222"}),
    ("another agent", {"agent": "OTHER"}),
]


@pytest.mark.parametrize(("what", "move"), MOVES, ids=[m[0] for m in MOVES])
async def test_moving_a_monitor_needs_its_credentials_again(env: Env, what: str, move: dict[str, Any]) -> None:
    [(agent, token), (other, _)] = await fleet(env, "gen1", "gen2")
    m = await create(env, ssh_body(agent))
    move = {k: other if v == "OTHER" else v for k, v in move.items()}
    rev = (await beat_monitors(env, agent, token))["monitor_revision"]
    before = await readable(env)
    for body in (move, {**move, "interval": 10}):
        r = await env.http.patch(f"/monitors/{m['id']}", json=body)
        assert r.status_code == 422 and "needs its credentials again" in r.text, r.text
        assert PASSWORD not in r.text
    assert await readable(env) == before
    assert (await beat_monitors(env, agent, token, rev))["monitors"] is None  # still the same assignment
    # Given again: moved, with the new ones only.
    r = await env.http.patch(f"/monitors/{m['id']}", json={**move, "credentials": {"username": "u", "password": "new"}})
    assert r.status_code == 200, r.text


async def test_a_move_without_stored_credentials_or_within_the_host_is_free(env: Env) -> None:
    [(agent, token), (other, other_token)] = await fleet(env, "gen1", "gen2")
    ssh = await create(env, ssh_body(agent))
    # The same host and port (a database named, the host's case): its credentials stay.
    pg = await create(env, ssh_body(agent, name="pg", kind="postgresql", target="DB.example:5432/app", thresholds=[]))
    r = await env.http.patch(f"/monitors/{pg['id']}", json={"target": "db.example:5432/other"})
    assert r.status_code == 200 and r.json()["credentials_set"] == ["password", "username"], r.text
    prom = await create(env, prom_body(agent))
    r = await env.http.patch(f"/monitors/{prom['id']}", json={"agent": other, "target": "http://127.0.0.9:9100/m"})
    assert r.status_code == 200, r.text
    # Dropped explicitly: an http monitor may then move (a linux-ssh one needs them, as ever).
    web = await create(env, prom_body(agent, name="web", kind="http", target="http://127.0.0.1/",
                                      credentials={"username": "u", "password": PASSWORD}))  # fmt: skip
    r = await env.http.patch(f"/monitors/{web['id']}", json={"agent": other, "credentials": None})
    assert r.status_code == 200 and r.json()["credentials_set"] == [], r.text
    answer = await beat_monitors(env, other, other_token)
    assert sorted(a["id"] for a in answer["monitors"]) == sorted([prom["id"], web["id"]])
    assert PASSWORD not in json.dumps(answer)
    assert [a["id"] for a in (await beat_monitors(env, agent, token))["monitors"]] == sorted([ssh["id"], pg["id"]])


# --- An agent older than monitors sends no revision: it is given none, and its monitors say why.


async def test_an_agent_older_than_monitors_gets_no_assignment(env: Env) -> None:
    [(agent, token)] = await wire.fleet(env, "gen1")
    m = await create(env, ssh_body(agent))
    for _ in range(2):
        answer = await beat_monitors(env, agent, token, None)
        assert answer["monitors"] is None and answer["monitor_revision"] is None
        assert PASSWORD not in json.dumps(answer)
    got = (await env.http.get(f"/monitors/{m['id']}")).json()
    version = (await env.http.get(f"/agents/{agent}")).json()["version"]
    assert got["state"] == "error" and got["error"] == f"agent gen1 is too old to run monitors (version {version})"
    # Upgraded: it sends 0 (none held), gets its assignment, and the monitor waits for its first report.
    assert [a["id"] for a in (await beat_monitors(env, agent, token, 0))["monitors"]] == [m["id"]]
    assert (await env.http.get(f"/monitors/{m['id']}")).json()["state"] == "pending"


# --- A deleted agent's monitors are kept (settings, history), run by none, read "agent deleted".


@pytest.mark.parametrize("force", [False, True])
async def test_a_deleted_agents_monitors_stay_in_error_until_moved(env: Env, force: bool) -> None:
    [(agent, _), (other, other_token)] = await fleet(env, "gen1", "gen2")
    m = await create(env, prom_body(agent, mode="tests"))
    r = await env.http.delete(f"/agents/{agent}", params={"force": "true"} if force else None)
    assert r.status_code == 204, r.text
    got = (await env.http.get(f"/monitors/{m['id']}")).json()
    assert got["state"] == "error" and got["error"].startswith("agent deleted"), got
    # No test may name it (no one would run it), nothing is made.
    before = await env.snapshot()
    r = await env.http.post("/tests", json={"name": "t", "plan": PLAN, "provider": "local", "containers": 1,
                                            "monitors": ["node"]})  # fmt: skip
    assert r.status_code == 422 and "agent deleted" in r.text, r.text
    assert await env.snapshot() == before
    # Moved to a live agent, it runs there.
    r = await env.http.patch(f"/monitors/{m['id']}", json={"agent": other, "mode": "always"})
    assert r.status_code == 200 and r.json()["state"] == "pending", r.text
    assert [a["id"] for a in (await beat_monitors(env, other, other_token))["monitors"]] == [m["id"]]


# --- Every bad input is a clear 4xx that changes nothing.

CASES: list[tuple[str, dict[str, Any], int, str]] = [
    ("unknown agent", {"agent": "a-000000000000"}, 422, "no agent"),
    ("postgresql without host", {"kind": "postgresql", "target": ":5432/app"}, 422, "host:port"),
    ("http target not a URL", {"kind": "http", "target": "127.0.0.1:80", "credentials": None}, 422, "URL"),
    ("password in the URL", {"kind": "http", "target": "http://u:p@127.0.0.1/", "credentials": None}, 422,
     "not in the target"),
    ("ssh without credentials", {"credentials": None}, 422, "linux-ssh monitor needs credentials"),
    ("neither above nor below", {"thresholds": [{"metric": "load1", "severity": "warning"}]}, 422, "give above"),
    ("above below below", {"thresholds": [{"metric": "load1", "above": 1, "below": 5}]}, 422, "less than below"),
    ("two of one severity", {"thresholds": [{"metric": "x", "above": 1}, {"metric": "x", "above": 2}]}, 422,
     "second warning"),
    ("threshold on a metric not kept", {"metrics": ["load5"]}, 422, "not among the metrics"),
    ("timeout over interval", {"interval": 5, "timeout": 9}, 422, "longer than interval"),
    ("match on ssh", {"match": "ok"}, 422, "http monitors only"),
    ("bad port", {"target": "127.0.0.1:70000"}, 422, "1-65535"),
    ("unknown kind", {"kind": "snmp"}, 422, "kind"),
    ("interval below 1 s", {"interval": 0.5}, 422, "interval"),
    ("unknown field", {"colour": "red"}, 422, "colour"),
    ("passphrase without key", {"credentials": {"username": "u", "password": "p", "passphrase": "x"}}, 422,
     "passphrase"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "over", "status", "says"), CASES, ids=[c[0] for c in CASES])
async def test_refused(env: Env, what: str, over: dict[str, Any], status: int, says: str) -> None:
    [(agent, _)] = await fleet(env, "gen1")
    await create(env, ssh_body(agent, name="kept"))
    before = await readable(env)
    r = await env.http.post("/monitors", json={**ssh_body(agent), **over})
    assert r.status_code == status, r.text
    assert says in r.text, r.text
    assert PASSWORD not in r.text
    assert await readable(env) == before


async def test_name_taken_is_409_and_a_bad_update_changes_nothing(env: Env) -> None:
    [(agent, _)] = await fleet(env, "gen1")
    m = await create(env, ssh_body(agent))
    other = await create(env, prom_body(agent))
    before = await readable(env)
    r = await env.http.post("/monitors", json=ssh_body(agent))
    assert r.status_code == 409 and "exists already" in r.text
    for body, status in (
        ({"name": "node"}, 409),
        ({"name": None}, 422),
        ({"credentials": None}, 422),  # a linux-ssh monitor needs them
        ({"credentials": {}}, 422),
        ({"thresholds": [{"metric": "load1", "above": 1, "below": 2}]}, 422),
        ({"agent": "a-nope"}, 422),
    ):
        r = await env.http.patch(f"/monitors/{m['id']}", json=body)
        assert r.status_code == status, (body, r.text)
    assert (await env.http.patch("/monitors/m-nope", json={"interval": 9})).status_code == 404
    assert (await env.http.delete("/monitors/m-nope")).status_code == 404
    assert (await env.http.get("/monitors/m-nope/metrics")).status_code == 404
    assert await readable(env) == before
    assert other["credentials_set"] == []


async def test_monitors_per_agent_are_capped(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from octotui.server.domain import monitorchecks

    monkeypatch.setattr(monitorchecks, "MAX_MONITORS_PER_AGENT", 2)
    [(agent, _)] = await fleet(env, "gen1")
    for i in range(2):
        await create(env, prom_body(agent, name=f"n{i}"))
    before = await readable(env)
    r = await env.http.post("/monitors", json=prom_body(agent, name="n3"))
    assert r.status_code == 409 and "the most one agent may run" in r.text
    assert await readable(env) == before


# --- An agent gets its monitors (with credentials) only when its revision differs.


async def test_sent_only_on_revision_change(env: Env) -> None:
    [(agent, token), (other, other_token)] = await fleet(env, "gen1", "gen2")
    # Nothing assigned, nothing held: the answer names no monitors at all.
    assert (await beat_monitors(env, agent, token))["monitors"] is None
    m = await create(env, ssh_body(agent))
    fast = env.app.state.fast_path
    answered = fast.answered
    first = await beat_monitors(env, agent, token)
    rev = first["monitor_revision"]
    assert [a["id"] for a in first["monitors"]] == [m["id"]] and rev
    assert first["monitors"][0]["timeout"] == 5  # min(interval, 10)
    again = await beat_monitors(env, agent, token, rev)
    assert again["monitors"] is None and again["monitor_revision"] is None
    # Another agent never gets it.
    assert (await beat_monitors(env, other, other_token))["monitors"] is None
    await env.http.patch(f"/monitors/{m['id']}", json={"interval": 10})
    changed = await beat_monitors(env, agent, token, rev)
    assert changed["monitor_revision"] != rev and changed["monitors"][0]["interval"] == 10
    # Moved to the other agent: the first is told to run none.
    r = await env.http.patch(
        f"/monitors/{m['id']}", json={"agent": other, "credentials": {"username": "u", "password": "p"}}
    )
    assert r.status_code == 200, r.text
    emptied = await beat_monitors(env, agent, token, changed["monitor_revision"])
    assert emptied["monitors"] == [] and emptied["monitor_revision"] == 0
    moved = await beat_monitors(env, other, other_token)
    assert [a["id"] for a in moved["monitors"]] == [m["id"]]
    await env.http.delete(f"/monitors/{m['id']}")
    gone = await beat_monitors(env, other, other_token, moved["monitor_revision"])
    assert gone["monitors"] == [] and gone["monitor_revision"] == 0
    # Every one of these heartbeats was answered by the agents' fast path, none handed on to FastAPI.
    assert fast.answered - answered == 7 and fast.passed_on == 0


async def test_tests_mode_runs_only_while_a_test_names_it(env: Env) -> None:
    [(agent, token)] = await fleet(env, "gen1")
    m = await create(env, prom_body(agent, mode="tests"))
    assert (await env.http.get(f"/monitors/{m['id']}")).json()["state"] == "idle"
    assert (await beat_monitors(env, agent, token))["monitors"] is None
    r = await env.http.post(
        "/tests", json={"name": "t", "plan": PLAN, "provider": "local", "containers": 1, "monitors": ["node"]}
    )
    assert r.status_code == 201, r.text
    assert r.json()["monitors"] == [m["id"]]
    answer = await beat_monitors(env, agent, token)
    assert [a["id"] for a in answer["monitors"]] == [m["id"]]
    assert (await env.http.get(f"/monitors/{m['id']}")).json()["state"] == "pending"
    # A monitor a live test names cannot be deleted.
    assert (await env.http.delete(f"/monitors/{m['id']}")).status_code == 409
    await env.http.post(f"/tests/{r.json()['id']}/stop")
    await wait_until_async(
        lambda: _ended(env, r.json()["id"]), timeout=10, what="the test to end (stopped before it started)"
    )
    env.ctl.tick()
    answer = await beat_monitors(env, agent, token, answer["monitor_revision"])
    assert answer["monitors"] == []


async def test_a_launch_naming_an_unknown_monitor_is_refused(env: Env) -> None:
    await fleet(env, "gen1")
    body = {"name": "t", "plan": PLAN, "provider": "local", "containers": 1}
    before = await env.snapshot()
    for extra, says in (
        ({"monitors": ["nope"]}, "no monitor"),
        ({"stop_on_critical": True}, "stop_on_critical"),
    ):
        r = await env.http.post("/tests", json={**body, **extra})
        assert r.status_code == 422 and says in r.text, r.text
    assert await env.snapshot() == before


async def _ended(env: Env, test_id: str) -> bool:
    return (await env.http.get(f"/tests/{test_id}")).json()["state"] in ("finished", "failed")


# --- Reports update state, error, values and the window; an offline agent's monitors read offline.


async def test_reports_and_window(start_server: Starter) -> None:
    env = await start_server(late_after=0.3, offline_after=0.6)
    [(agent, token)] = await fleet(env, "gen1")
    m = await create(env, prom_body(agent))
    rev = (await beat_monitors(env, agent, token))["monitor_revision"]
    samples = [sample(1000.0 + 5 * i, node_load1=0.1 * i) for i in range(3)]
    await beat_monitors(env, agent, token, rev, [mreport(m["id"], *samples)])
    got = (await env.http.get(f"/monitors/{m['id']}")).json()
    assert got["state"] == "ok" and got["last_values"] == {"node_load1": pytest.approx(0.2)}
    assert got["last_ts"] == 1010.0
    metrics = (await env.http.get(f"/monitors/{m['id']}/metrics")).json()
    assert [s["ts"] for s in metrics["samples"]] == [1000.0, 1005.0, 1010.0]
    recent = (await env.http.get(f"/monitors/{m['id']}/metrics", params={"seconds": 6})).json()
    assert [s["ts"] for s in recent["samples"]] == [1005.0, 1010.0]
    err = "unreachable: connection refused"
    await beat_monitors(env, agent, token, rev, [mreport(m["id"], state="error", error=err)])
    got = (await env.http.get(f"/monitors/{m['id']}")).json()
    assert (got["state"], got["error"]) == ("error", err)
    # A report for a monitor of another agent, or unknown, changes nothing.
    [(other, other_token)] = await fleet(env, "gen2")
    await beat_monitors(env, other, other_token, None, [mreport(m["id"], sample(2000.0, node_load1=9))])
    assert (await env.http.get(f"/monitors/{m['id']}")).json()["last_ts"] == 1010.0

    async def offline() -> bool:
        env.ctl.tick()
        return bool((await env.http.get(f"/monitors/{m['id']}")).json()["state"] == "offline")

    await wait_until_async(offline, timeout=10, what="the monitor of a silent agent to read offline")
    assert (await env.http.get(f"/monitors/{m['id']}/metrics", params={"seconds": 0})).status_code == 422


async def test_restart_keeps_monitors(tmp_path: Path) -> None:
    async with serving(tmp_path / "d") as env:
        [(agent, token)] = await fleet(env, "gen1")
        m = await create(env, ssh_body(agent))
        rev = (await beat_monitors(env, agent, token))["monitor_revision"]
    async with serving(tmp_path / "d") as env:
        got = (await env.http.get(f"/monitors/{m['id']}")).json()
        keys = ("name", "kind", "target", "thresholds", "credentials_set")
        assert {k: got[k] for k in keys} == {k: m[k] for k in keys}
        # The same set gives the same revision: nothing is sent again after a restart.
        assert (await beat_monitors(env, agent, token, rev))["monitors"] is None
        answer = await beat_monitors(env, agent, token)
        assert answer["monitors"][0]["credentials"]["password"] == PASSWORD


# --- the client's methods


async def test_the_client_speaks_monitors(env: Env) -> None:
    [(agent, token)] = await fleet(env, "gen1")
    transport = httpx.ASGITransport(app=env.app)
    async with Client("http://test", ADMIN, transport=transport) as client:
        made = await client.create_monitor(MonitorCreate.model_validate(ssh_body(agent)))
        assert made.credentials_set == ["password", "username"] and made.thresholds[0].for_s == 10
        assert [m.id for m in await client.monitors()] == [made.id]
        assert await client.monitors(agent_id="a-other") == []
        changed = await client.update_monitor(made.id, MonitorUpdate(interval=10))
        assert changed.interval == 10 and changed.credentials_set == ["password", "username"]
        rev = (await beat_monitors(env, agent, token))["monitor_revision"]
        await beat_monitors(env, agent, token, rev, [mreport(made.id, sample(5.0, load1=5.0), sample(20.0, load1=5.0))])
        assert (await client.monitor(made.id)).alarms == 1
        assert [s.ts for s in (await client.monitor_metrics(made.id)).samples] == [5.0, 20.0]
        assert [s.ts for s in (await client.monitor_metrics(made.id, seconds=1)).samples] == [20.0]
        [alarm] = await client.alarms(monitor=made.id, active=True)
        assert alarm.severity == "critical" and alarm.threshold == "above 4 for 10 s"
        assert await client.alarms(active=False) == []
        with pytest.raises(ClientError) as refused:
            await client.update_monitor(made.id, MonitorUpdate(credentials=None))
        assert refused.value.status == 422
        await client.delete_monitor(made.id)
        assert await client.monitors() == []
        audit = await client.audit(limit=3)
        assert [e.action for e in audit] == ["monitor.delete", "monitor.update", "monitor.create"]
        assert all(PASSWORD not in e.detail for e in audit)
