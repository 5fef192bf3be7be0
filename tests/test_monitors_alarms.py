"""Thresholds and alarms through the real app with wire-level agents: raised after ``for`` seconds
and cleared, listed and filtered, a critical one stopping a test that asked for it, and the
monitors' series and alarms kept with a test over a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from octotui.server.domain import alarms
from tests.support.app import Env
from tests.support.labelkit import serving
from tests.support.monitorkit import beat_monitors, create, fleet, mreport, prom_body, sample
from tests.support.wire import ack, poll, report, spec

T0 = 1_700_000_000.0
LOAD = [
    {"metric": "node_load1", "severity": "warning", "above": 2, "for": 10},
    {"metric": "node_load1", "severity": "critical", "above": 4},
    {"metric": "up", "severity": "critical", "below": 1, "for": 0},
]


async def _send(env: Env, agent: tuple[str, str], rev: int, monitor_id: str, *points: tuple[float, float]) -> None:
    samples = [sample(T0 + dt, node_load1=v, up=1.0) for dt, v in points]
    await beat_monitors(env, *agent, rev, [mreport(monitor_id, *samples)])


async def _alarms(env: Env, **params: Any) -> list[dict[str, Any]]:
    r = await env.http.get("/alarms", params=params)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_raised_only_once_held_for_its_duration_and_cleared(env: Env) -> None:
    agent = (await fleet(env, "gen1"))[0]
    m = await create(env, prom_body(agent[0], thresholds=LOAD))
    rev = (await beat_monitors(env, *agent))["monitor_revision"]
    await _send(env, agent, rev, m["id"], (0, 1.0), (5, 3.0))
    await _send(env, agent, rev, m["id"], (10, 3.5))  # above 2 for 5 s only
    assert await _alarms(env) == []
    await _send(env, agent, rev, m["id"], (15, 3.2))  # above 2 for 10 s: raised
    await _send(env, agent, rev, m["id"], (10, 3.5), (15, 3.2))  # sent again (a lost answer): taken once
    [warning] = await _alarms(env, active="true")
    assert len((await env.http.get(f"/monitors/{m['id']}/metrics")).json()["samples"]) == 4
    assert (warning["metric"], warning["severity"], warning["value"]) == ("node_load1", "warning", 3.2)
    assert warning["threshold"] == "above 2 for 10 s" and warning["ended_at"] is None
    assert warning["monitor"] == m["id"] and warning["monitor_name"] == "node" and warning["test_id"] is None
    assert (await env.http.get(f"/monitors/{m['id']}")).json()["alarms"] == 1
    await _send(env, agent, rev, m["id"], (20, 5.0))  # critical at once (no 'for'); the warning holds
    assert sorted(a["severity"] for a in await _alarms(env, active="true")) == ["critical", "warning"]
    await _send(env, agent, rev, m["id"], (25, 1.0))  # back in bounds: both cleared
    assert await _alarms(env, active="true") == []
    ended = await _alarms(env, active="false", monitor=m["id"])
    assert [(a["severity"], a["value"]) for a in ended] == [("critical", 5.0), ("warning", 5.0)]
    assert all(a["ended_at"] is not None and a["ended_at"] >= a["started_at"] for a in ended)
    assert (await env.http.get(f"/monitors/{m['id']}")).json()["alarms"] == 0
    # Another crossing shorter than 'for' raises nothing new.
    await _send(env, agent, rev, m["id"], (30, 3.0), (35, 1.0))
    assert len(await _alarms(env)) == 2
    assert await _alarms(env, monitor="m-other") == []
    for bad in ({"active": "maybe"}, {"limit": 0}, {"limit": 10_001}):
        assert (await env.http.get("/alarms", params=bad)).status_code == 422


async def test_an_update_dropping_a_threshold_ends_its_alarm_and_a_deletion_ends_all(env: Env) -> None:
    agent = (await fleet(env, "gen1"))[0]
    m = await create(env, prom_body(agent[0], thresholds=LOAD))
    rev = (await beat_monitors(env, *agent))["monitor_revision"]
    await _send(env, agent, rev, m["id"], (0, 5.0), (10, 5.0))
    assert len(await _alarms(env, active="true")) == 2
    r = await env.http.patch(f"/monitors/{m['id']}", json={"thresholds": LOAD[1:]})
    assert r.status_code == 200 and r.json()["alarms"] == 1, r.text
    assert [a["severity"] for a in await _alarms(env, active="true")] == ["critical"]
    assert (await env.http.delete(f"/monitors/{m['id']}")).status_code == 204
    kept = await _alarms(env, monitor=m["id"])
    assert len(kept) == 2 and all(a["ended_at"] is not None for a in kept)
    assert kept[0]["monitor_name"] == "node"  # the name outlives the monitor


async def _running(env: Env, agents: list[tuple[str, str]], **over: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    r = await env.http.post("/tests", json=spec(containers=1, **over))
    assert r.status_code == 201, r.text
    agent_id, token = agents[0]
    (cmd,) = await poll(env, agent_id, token)
    await ack(env, agent_id, token, cmd["id"])
    await env.beat(agent_id, token, containers=[report(cmd, "running")])
    return r.json(), cmd


async def test_a_critical_alarm_stops_a_test_that_asked_as_failed(env: Env) -> None:
    agents = await fleet(env, "gen1")
    m = await create(env, prom_body(agents[0][0], thresholds=LOAD, mode="tests"))
    watched, cmd = await _running(env, agents, monitors=["node"], stop_on_critical=True)
    assert watched["stop_on_critical"] is True and watched["monitors"] == [m["id"]]
    rev = (await beat_monitors(env, *agents[0]))["monitor_revision"]
    await _send(env, agents[0], rev, m["id"], (0, 1.0), (5, 4.5))
    got = (await env.http.get(f"/tests/{watched['id']}")).json()
    assert got["state"] == "stopping" and "critical alarm" in got["reason"] and "node_load1" in got["reason"]
    [alarm] = await _alarms(env, test=watched["id"])
    assert alarm["severity"] == "critical" and alarm["test_id"] == watched["id"]
    answer = await env.beat(*agents[0], containers=[report(cmd, "finished", exit_code=0)])
    assert answer["stop"] == []
    got = (await env.http.get(f"/tests/{watched['id']}")).json()
    assert got["state"] == "failed", got
    assert "stopped by a critical alarm: node node_load1 = 4.5 (above 4)" in got["reason"]


async def test_a_critical_alarm_leaves_a_test_that_did_not_ask_running(env: Env) -> None:
    agents = await fleet(env, "gen1")
    m = await create(env, prom_body(agents[0][0], thresholds=LOAD))
    test, _ = await _running(env, agents, monitors=["node"])
    rev = (await beat_monitors(env, *agents[0]))["monitor_revision"]
    await _send(env, agents[0], rev, m["id"], (0, 9.0))
    assert (await env.http.get(f"/tests/{test['id']}")).json()["state"] == "running"
    assert [a["test_id"] for a in await _alarms(env)] == [test["id"]]


async def test_a_tests_series_and_alarms_survive_a_restart(tmp_path: Path) -> None:
    async with serving(tmp_path / "d") as env:
        agents = await fleet(env, "gen1")
        m = await create(env, prom_body(agents[0][0], thresholds=LOAD, mode="tests"))
        test, cmd = await _running(env, agents, monitors=[m["id"]])
        rev = (await beat_monitors(env, *agents[0]))["monitor_revision"]
        await _send(env, agents[0], rev, m["id"], *[(5.0 * i, float(i % 6)) for i in range(12)])
        live = (await env.http.get(f"/tests/{test['id']}/monitors")).json()
        load = next(s for s in live["series"] if s["metric"] == "node_load1")
        assert load["monitor"] == m["id"] and load["monitor_name"] == "node"
        assert [p[1] for p in load["points"]] == [float(i % 6) for i in range(12)]
        # Two crossings (3, 4, 5 then 0): each raised a warning (held 10 s) and a critical alarm.
        assert [a["severity"] for a in live["alarms"]] == ["critical", "warning"] * 2
        await alarms.save(env.ctl, everything=True)
    async with serving(tmp_path / "d") as env:
        again = (await env.http.get(f"/tests/{test['id']}/monitors")).json()
        assert again == live
        # The alarms raised at the stop are still raised, and clear when the value is back in bounds.
        assert (await env.http.get(f"/monitors/{m['id']}")).json()["alarms"] == 2
        # It goes on where it was, then ends: the series is read from the store, the same.
        await _send(env, agents[0], rev, m["id"], (60.0, 1.0))
        await env.beat(*agents[0], containers=[report(cmd, "finished", exit_code=0)])
        await alarms.save(env.ctl)
        ended = (await env.http.get(f"/tests/{test['id']}/monitors")).json()
        load = next(s for s in ended["series"] if s["metric"] == "node_load1")
        assert load["points"][-1] == [T0 + 60.0, 1.0] and len(load["points"]) == 13
        assert not any(k[0] == test["id"] for k in env.ctl.monitors.series)
        assert (await env.http.get(f"/monitors/{m['id']}")).json()["alarms"] == 0
        assert await _alarms(env, active="true") == []
    assert (await _status(tmp_path, "/tests/t-nope/monitors")) == 404


async def _status(tmp_path: Path, path: str) -> int:
    async with serving(tmp_path / "d") as env:
        return (await env.http.get(path)).status_code


async def test_a_long_tests_series_and_the_live_window_stay_bounded(env: Env) -> None:
    agents = await fleet(env, "gen1")
    m = await create(env, prom_body(agents[0][0], interval=1))
    test, _ = await _running(env, agents, monitors=["node"])
    rev = (await beat_monitors(env, *agents[0]))["monitor_revision"]
    for start in range(0, 2100, 700):  # 35 minutes of one sample a second, in 3 heartbeats
        await _send(env, agents[0], rev, m["id"], *[(float(i), float(i)) for i in range(start, start + 700)])
    load = next(
        s for s in (await env.http.get(f"/tests/{test['id']}/monitors")).json()["series"] if s["metric"] == "node_load1"
    )
    points = load["points"]
    # Past 2,000 points neighbours merged two by two (their mean, at the later one's time).
    assert 1000 <= len(points) <= 2000
    assert points[0] == [T0 + 1.0, 0.5] and points[-1][0] == T0 + 2099.0
    window = (await env.http.get(f"/monitors/{m['id']}/metrics")).json()["samples"]
    assert len(window) == 601 and window[0]["ts"] == T0 + 1499.0 and window[-1]["values"]["node_load1"] == 2099.0


async def test_deleting_a_test_deletes_its_monitor_series(env: Env) -> None:
    agents = await fleet(env, "gen1")
    m = await create(env, prom_body(agents[0][0], thresholds=LOAD))
    test, cmd = await _running(env, agents, monitors=["node"])
    rev = (await beat_monitors(env, *agents[0]))["monitor_revision"]
    await _send(env, agents[0], rev, m["id"], (0.0, 9.0))
    await env.beat(*agents[0], containers=[report(cmd, "finished", exit_code=0)])
    await alarms.save(env.ctl)
    assert await _rows(env, test["id"]) == (1, 2)  # named monitors; one series a metric (node_load1, up)
    assert (await env.http.delete(f"/tests/{test['id']}")).status_code == 204
    await alarms.save(env.ctl)
    assert await _rows(env, test["id"]) == (0, 0)
    assert [a["test_id"] for a in await _alarms(env)] == [test["id"]]  # the alarm stays, naming it


async def _rows(env: Env, test_id: str) -> tuple[int, int]:
    def run() -> tuple[int, int]:
        db = env.ctl.store.db
        named = db.execute("SELECT COUNT(*) FROM test_monitors WHERE test_id = ?", (test_id,)).fetchone()[0]
        series = db.execute("SELECT COUNT(*) FROM monitor_series WHERE test_id = ?", (test_id,)).fetchone()[0]
        return int(named), int(series)

    return await env.ctl.store._run(run)
