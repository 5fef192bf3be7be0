"""Tests (load tests) through the real server app: placement, launch commands, the state machine
driven by container reports, live and final results, stop, and every refusal changing nothing."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from octotui.client import Client
from octotui.protocol import TestCreate, rt_bucket
from tests.support.app import ADMIN, Env, Starter
from tests.support.wire import ack, figures, fleet, poll, report, spec


async def test_dry_run_places_evenly_and_launches_nothing(env: Env) -> None:
    (a1, t1), (a2, t2) = await fleet(env, "gen-1", "gen-2")
    before = await env.snapshot()
    r = await env.http.post("/tests", json=spec(containers=5, dry_run=True))
    assert r.status_code == 200, r.text
    placement = r.json()
    assert placement["containers"] == 5 and placement["provider_name"] == "local"
    assert sorted(i["containers"] for i in placement["items"]) == [2, 3]
    assert {i["agent"] for i in placement["items"]} == {a1, a2}
    assert await env.snapshot() == before
    assert await poll(env, a1, t1) == [] and await poll(env, a2, t2) == []


async def test_launch_spreads_with_properties_and_unique_ports(env: Env) -> None:
    (a1, t1), (a2, t2) = await fleet(env, "gen-1", "gen-2")
    r = await env.http.post(
        "/tests", json=spec(containers=3, users=10, duration=60, rampup=5, properties={"host": "127.0.0.1"})
    )
    assert r.status_code == 201, r.text
    test = r.json()
    assert test["state"] == "pending" and test["image"] == "justb4/jmeter:5.5"
    assert test["properties"] == {"host": "127.0.0.1", "users": "10", "duration": "60", "rampup": "5"}
    assert len(test["containers"]) == 3
    assert all(c["state"] == "pending" and c["agent"] in (a1, a2) for c in test["containers"])
    commands = await poll(env, a1, t1) + await poll(env, a2, t2)
    assert len(commands) == 3 and all(c["kind"] == "launch" for c in commands)
    launches = [c["launch"] for c in commands]
    assert sorted(x["index"] for x in launches) == [0, 1, 2] and {x["count"] for x in launches} == {3}
    assert len({x["shutdown_port"] for x in launches}) == 3
    assert {x["container_id"] for x in launches} == {c["id"] for c in test["containers"]}
    assert launches[0]["properties"]["users"] == "10" and launches[0]["network_mode"] == "host"
    # A second test gets other shutdown ports while the first one's containers live.
    r = await env.http.post("/tests", json=spec(containers=1, image="octotui-jmeter:local"))
    assert r.status_code == 201 and r.json()["image"] == "octotui-jmeter:local"
    later = await poll(env, a1, t1) + await poll(env, a2, t2)
    new_ports = {c["launch"]["shutdown_port"] for c in later if c["test_id"] == r.json()["id"]}
    assert new_ports.isdisjoint({x["shutdown_port"] for x in launches})
    # Provider by id works as well as by name.
    pid = test["provider"]
    r = await env.http.post("/tests", json=spec(provider=pid, containers=1, dry_run=True))
    assert r.status_code == 200


async def test_state_machine_live_and_final_results(env: Env) -> None:
    (a1, t1), (a2, t2) = await fleet(env, "gen-1", "gen-2")
    test = (await env.http.post("/tests", json=spec(containers=2))).json()
    cmd1, cmd2 = (await poll(env, a1, t1))[0], (await poll(env, a2, t2))[0]

    async def state() -> dict[str, Any]:
        return (await env.http.get(f"/tests/{test['id']}")).json()  # type: ignore[no-any-return]

    await ack(env, a1, t1, cmd1["id"])
    await env.beat(a1, t1, containers=[report(cmd1, "pulling", pull_progress=0.5)])
    s = await state()
    assert s["state"] == "starting"
    assert {c["id"]: c["state"] for c in s["containers"]}[cmd1["container_id"]] == "pulling"

    await env.beat(a1, t1, containers=[report(cmd1, "running", docker_id="d1", figures=figures(100, 50.0, 10.0, 2))])
    await ack(env, a2, t2, cmd2["id"])
    await env.beat(a2, t2, containers=[report(cmd2, "running", figures=figures(300, 150.0, 30.0, 1))])
    s = await state()
    assert s["state"] == "running" and s["started_at"]
    res = s["results"]
    assert res["samples"] == 400 and res["errors"] == 3 and res["throughput"] == 200.0
    assert res["avg_ms"] == 25.0  # (100*10 + 300*30) / 400
    assert res["active"] == 10 and res["final"] is False
    # The series gets a point per second while it runs.
    deadline = time.monotonic() + 5
    while not (await env.http.get(f"/tests/{test['id']}/series")).json()["points"]:
        assert time.monotonic() < deadline, "no series point"
        await asyncio.sleep(0.1)
    point = (await env.http.get(f"/tests/{test['id']}/series")).json()["points"][-1]
    assert point["rate"] == 200.0 and point["errors"] == 3

    r = await env.http.post(f"/tests/{test['id']}/stop")
    assert r.status_code == 200 and r.json()["state"] == "stopping"
    stops = await poll(env, a1, t1) + await poll(env, a2, t2)
    assert sorted(c["kind"] for c in stops) == ["stop", "stop"]
    # The agent, not yet aware of the stop, still says running: the record stays "stopping".
    await env.beat(a1, t1, containers=[report(cmd1, "running", figures=figures(120, 50.0, 10.0, 2))])
    assert {c["state"] for c in (await state())["containers"]} == {"stopping"}

    final1 = {"samples": 120, "errors": 2, "throughput": 55.0, "avg_ms": 10.0, "min_ms": 1, "max_ms": 90,
              "p90_ms": 20, "p95_ms": 30, "p99_ms": 40}  # fmt: skip
    final2 = {"samples": 360, "errors": 1, "throughput": 160.0, "avg_ms": 30.0, "min_ms": 2, "max_ms": 120,
              "p90_ms": 50, "p95_ms": 60, "p99_ms": 35}  # fmt: skip
    await env.beat(a1, t1, containers=[report(cmd1, "finished", exit_code=0, final=final1)])
    assert (await state())["state"] == "stopping"
    await env.beat(a2, t2, containers=[report(cmd2, "finished", exit_code=0, final=final2)])
    s = await state()
    assert s["state"] == "finished" and s["ended_at"] and s["reason"] == "stopped by admin before its planned end"
    res = s["results"]
    assert res["final"] is True and res["samples"] == 480 and res["errors"] == 3
    assert res["throughput"] == 215.0 and res["avg_ms"] == 25.0
    assert res["p90_ms"] == 50 and res["p95_ms"] == 60 and res["p99_ms"] == 40  # the max of the containers'
    assert res["min_ms"] == 1 and res["max_ms"] == 120
    # A finished test's containers still reported running are told to stop.
    reply = await env.beat(a1, t1, containers=[report(cmd1, "running")])
    assert reply["stop"] == [cmd1["container_id"]]


async def test_final_percentiles_merge_the_containers_histograms(env: Env) -> None:
    (a1, t1), (a2, t2) = await fleet(env, "gen-1", "gen-2")
    test = (await env.http.post("/tests", json=spec(containers=2))).json()
    cmd1, cmd2 = (await poll(env, a1, t1))[0], (await poll(env, a2, t2))[0]
    fast = list(range(1, 901))  # one container answered fast, the other slowly
    slow = [v for v in range(500, 600) for _ in range(9)]

    def final(values: list[int]) -> dict[str, Any]:
        histogram: dict[int, int] = {}
        for v in values:
            histogram[rt_bucket(v)] = histogram.get(rt_bucket(v), 0) + 1
        ordered = sorted(values)
        return {"samples": len(values), "avg_ms": sum(values) / len(values), "min_ms": ordered[0],
                "max_ms": ordered[-1], "p99_ms": ordered[-1], "histogram": histogram}  # fmt: skip

    for (agent, token), cmd, values in (((a1, t1), cmd1, fast), ((a2, t2), cmd2, slow)):
        await ack(env, agent, token, cmd["id"])
        await env.beat(agent, token, containers=[report(cmd, "finished", exit_code=0, final=final(values))])
    res = (await env.http.get(f"/tests/{test['id']}")).json()["results"]
    everything = sorted(fast + slow)
    assert res["samples"] == 1800
    for key, percent in (("p90_ms", 90), ("p95_ms", 95), ("p99_ms", 99)):
        assert res[key] == everything[math.ceil(percent / 100 * len(everything)) - 1], key


async def test_list_keeps_live_tests_and_only_the_newest_ended(env: Env) -> None:
    await fleet(env, "gen-1")
    ids = [(await env.http.post("/tests", json=spec(name=f"t{i}", containers=1))).json()["id"] for i in range(4)]
    for test_id in ids[:3]:  # never handed out: stopping them ends them at once
        assert (await env.http.post(f"/tests/{test_id}/stop")).json()["state"] in ("finished", "failed")

    async def listed(**params: Any) -> list[str]:
        r = await env.http.get("/tests", params=params)
        assert r.status_code == 200, r.text
        return [t["id"] for t in r.json()]

    assert await listed() == ids
    assert await listed(ended=1) == [ids[2], ids[3]]
    assert await listed(ended=0) == [ids[3]]
    assert await listed(ended=10) == ids
    for bad in (-1, "some"):
        assert (await env.http.get("/tests", params={"ended": bad})).status_code == 422


async def test_failed_launch_fails_the_test_with_its_reason(env: Env) -> None:
    ((a1, t1),) = await fleet(env, "gen-1")
    test = (await env.http.post("/tests", json=spec(containers=1))).json()
    cmd = (await poll(env, a1, t1))[0]
    await ack(env, a1, t1, cmd["id"], ok=False, error="image octotui-jmeter:nope not found and cannot be pulled")
    s = (await env.http.get(f"/tests/{test['id']}")).json()
    assert s["state"] == "failed"
    assert "cannot be pulled" in s["reason"] and s["containers"][0]["state"] == "failed"


async def test_offline_agent_loses_its_containers(start_server: Starter) -> None:
    env = await start_server(late_after=0.5, offline_after=1.0, return_wait=1.0)
    ((a1, t1),) = await fleet(env, "gen-1")
    test = (await env.http.post("/tests", json=spec(containers=1))).json()
    cmd = (await poll(env, a1, t1))[0]
    await ack(env, a1, t1, cmd["id"])
    await env.beat(a1, t1, containers=[report(cmd, "running", figures=figures(10, 5.0, 3.0))])
    deadline = time.monotonic() + 10
    while (s := (await env.http.get(f"/tests/{test['id']}")).json())["state"] not in ("failed", "finished"):
        assert time.monotonic() < deadline, s
        await asyncio.sleep(0.1)
    assert s["state"] == "failed" and "went offline" in s["reason"]
    assert s["containers"][0]["state"] == "lost"
    assert s["results"]["samples"] == 10 and s["results"]["final"] is True


async def test_a_test_waits_for_its_lost_agent_and_takes_its_results_back(start_server: Starter) -> None:
    """A machine back from an outage: its container ran on, the test gets everything it did."""
    env = await start_server(late_after=0.5, offline_after=1.0)
    ((a1, t1),) = await fleet(env, "gen-1")
    test = (await env.http.post("/tests", json=spec(containers=1, duration=60))).json()
    cmd = (await poll(env, a1, t1))[0]
    await ack(env, a1, t1, cmd["id"])
    await env.beat(a1, t1, containers=[report(cmd, "running", figures=figures(12, 5.0, 3.0))])
    deadline = time.monotonic() + 10
    while (s := (await env.http.get(f"/tests/{test['id']}")).json())["containers"][0]["state"] != "lost":
        assert time.monotonic() < deadline, s
        await asyncio.sleep(0.1)
    assert s["state"] == "running", "nothing live, but its agent may come back before the planned end"
    assert "went offline" in s["reason"] and "waiting for the agent to come back" in s["reason"]
    await asyncio.sleep(0.5)  # ticks go by: still waiting
    assert (await env.http.get(f"/tests/{test['id']}")).json()["state"] == "running"

    done = report(cmd, "finished", exit_code=0, figures=figures(101, 5.0, 3.0))
    await env.beat(a1, t1, containers=[done])
    s = (await env.http.get(f"/tests/{test['id']}")).json()
    assert s["state"] == "finished" and s["containers"][0]["state"] == "finished", s
    assert s["results"]["samples"] == 101 and not s["reason"]


async def test_an_agent_back_with_all_its_containers_hands_in_every_result(start_server: Starter) -> None:
    env = await start_server(late_after=0.5, offline_after=1.0)
    ((a1, t1),) = await fleet(env, "gen-1")
    test = (await env.http.post("/tests", json=spec(containers=2, duration=60))).json()
    cmds = await poll(env, a1, t1)
    for cmd in cmds:
        await ack(env, a1, t1, cmd["id"])
    await env.beat(a1, t1, containers=[report(cmd, "running", figures=figures(5, 5.0, 3.0)) for cmd in cmds])
    deadline = time.monotonic() + 10
    while {c["state"] for c in (await env.http.get(f"/tests/{test['id']}")).json()["containers"]} != {"lost"}:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    # back with both, finished: one heartbeat; the first must not end the test without the second
    done = [report(cmd, "finished", exit_code=0, figures=figures(40, 5.0, 3.0)) for cmd in cmds]
    await env.beat(a1, t1, containers=done)
    s = (await env.http.get(f"/tests/{test['id']}")).json()
    assert s["state"] == "finished" and {c["state"] for c in s["containers"]} == {"finished"}, s["reason"]
    assert s["results"]["samples"] == 80 and not s["reason"]


async def test_a_launch_lost_before_it_started_ends_the_test(start_server: Starter) -> None:
    """Never acknowledged: the launch was withdrawn with its agent, so nothing can come back."""
    env = await start_server(late_after=0.5, offline_after=1.0)
    await fleet(env, "gen-1")
    test = (await env.http.post("/tests", json=spec(containers=1, duration=60))).json()
    deadline = time.monotonic() + 10
    while (s := (await env.http.get(f"/tests/{test['id']}")).json())["state"] == "pending":
        assert time.monotonic() < deadline, s
        await asyncio.sleep(0.1)
    assert s["state"] == "failed" and s["containers"][0]["state"] == "lost" and "went offline" in s["reason"]


async def test_a_stop_or_a_gone_agent_ends_the_wait(start_server: Starter) -> None:
    env = await start_server(late_after=0.5, offline_after=1.0)
    (a1, t1), (a2, t2) = await fleet(env, "gen-1", "gen-2")
    for n in range(2):  # both beat just before each launch (late after 0.5 s): one test on each agent
        for aid, tok in ((a1, t1), (a2, t2)):
            await env.beat(aid, tok)
        assert (await env.http.post("/tests", json=spec(containers=1, name=f"t{n}"))).status_code == 201
    for aid, tok in ((a1, t1), (a2, t2)):
        (cmd,) = await poll(env, aid, tok)
        await ack(env, aid, tok, cmd["id"])
        await env.beat(aid, tok, containers=[report(cmd, "running", figures=figures(5, 5.0, 3.0))])
    deadline = time.monotonic() + 10
    while {c["state"] for t in (await env.http.get("/tests")).json() for c in t["containers"]} != {"lost"}:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    by_agent = {t["containers"][0]["agent"]: t["id"] for t in (await env.http.get("/tests")).json()}
    r = await env.http.post(f"/tests/{by_agent[a1]}/stop")
    assert r.status_code == 200 and r.json()["state"] == "finished", "stopped: no reason to wait"
    deadline = time.monotonic() + 10
    while (s := (await env.http.get(f"/tests/{by_agent[a2]}")).json())["state"] == "running":
        assert time.monotonic() < deadline, s
        await env.beat(a2, t2, containers=[])  # back, without the container (its machine lost it)
        await asyncio.sleep(0.1)
    assert s["state"] == "failed" and s["containers"][0]["state"] == "lost"


async def test_containers_missing_from_complete_reports_are_lost(env: Env) -> None:
    ((a1, t1),) = await fleet(env, "gen-1")
    test = (await env.http.post("/tests", json=spec(containers=1))).json()
    cmd = (await poll(env, a1, t1))[0]
    await ack(env, a1, t1, cmd["id"])
    await env.beat(a1, t1, containers=[report(cmd, "running")])
    await env.beat(a1, t1, containers=[], complete=False)  # partial reports prove nothing
    await env.beat(a1, t1, containers=[])
    assert (await env.http.get(f"/tests/{test['id']}")).json()["containers"][0]["state"] == "running"
    await env.beat(a1, t1, containers=[])
    s = (await env.http.get(f"/tests/{test['id']}")).json()
    assert s["containers"][0]["state"] == "lost" and s["state"] == "failed"


async def test_stray_containers_are_told_to_stop(env: Env) -> None:
    ((a1, t1),) = await fleet(env, "gen-1")
    reply = await env.beat(a1, t1, containers=[{"container_id": "c-ghost", "test_id": "t-ghost", "state": "running"}])
    assert reply["stop"] == ["c-ghost"]
    reply = await env.beat(a1, t1, containers=[{"container_id": "c-ghost", "test_id": "t-ghost", "state": "finished"}])
    assert reply["stop"] == []


async def test_stop_before_delivery_cancels_the_launch(env: Env) -> None:
    ((a1, t1),) = await fleet(env, "gen-1")
    test = (await env.http.post("/tests", json=spec(containers=1))).json()
    r = await env.http.post(f"/tests/{test['id']}/stop")
    assert r.status_code == 200 and r.json()["state"] == "finished"
    assert await poll(env, a1, t1) == []
    # Stopping again is harmless.
    assert (await env.http.post(f"/tests/{test['id']}/stop")).json()["state"] == "finished"


async def test_stop_one_container(env: Env) -> None:
    (a1, t1), (a2, t2) = await fleet(env, "gen-1", "gen-2")
    test = (await env.http.post("/tests", json=spec(containers=2))).json()
    cmd1, cmd2 = (await poll(env, a1, t1))[0], (await poll(env, a2, t2))[0]
    for (aid, tok), cmd in (((a1, t1), cmd1), ((a2, t2), cmd2)):
        await ack(env, aid, tok, cmd["id"])
        await env.beat(aid, tok, containers=[report(cmd, "running")])
    r = await env.http.post(f"/tests/{test['id']}/containers/{cmd1['container_id']}/stop")
    assert r.status_code == 200
    states = {c["id"]: c["state"] for c in r.json()["containers"]}
    assert states == {cmd1["container_id"]: "stopping", cmd2["container_id"]: "running"}
    assert r.json()["state"] == "running"
    stop = await poll(env, a1, t1)
    assert [(c["kind"], c["container_id"]) for c in stop] == [("stop", cmd1["container_id"])]
    # the last live one stopped too: the test is stopping (it was shown "starting"), then ends
    r = await env.http.post(f"/tests/{test['id']}/containers/{cmd2['container_id']}/stop")
    assert r.status_code == 200 and r.json()["state"] == "stopping", r.json()["state"]
    await env.beat(a1, t1, containers=[report(cmd1, "finished", exit_code=0)])
    await env.beat(a2, t2, containers=[report(cmd2, "finished", exit_code=0)])
    assert (await env.http.get(f"/tests/{test['id']}")).json()["state"] == "finished"


async def test_bad_tests_are_refused_and_change_nothing(env: Env) -> None:
    await fleet(env, "gen-1", "gen-2")
    await fleet(env, "no-docker", docker=False)
    before = await env.snapshot()
    cases: list[tuple[dict[str, Any], int, str]] = [
        (spec(plan="not xml"), 422, "not well-formed"),
        (spec(plan="<jmeterTestPlan>"), 422, "not well-formed"),
        (spec(plan="<html><body/></html>"), 422, "root element is <html>"),
        (spec(plan="<jmeterTestPlan><hashTree/></jmeterTestPlan>"), 422, "no <TestPlan>"),
        (spec(plan='<!DOCTYPE x [<!ENTITY a "b">]><jmeterTestPlan><TestPlan/></jmeterTestPlan>'), 422, "DOCTYPE"),
        (spec(provider="nowhere"), 404, "nowhere"),
        (spec(containers=1000), 409, "needs 1000 containers"),
        (spec(locations=["tokyo"]), 409, "in tokyo"),
    ]
    for body, status, words in cases:
        for dry_run in (False, True):
            r = await env.http.post("/tests", json={**body, "dry_run": dry_run})
            assert r.status_code == status, (body, r.text)
            assert words in r.json()["detail"], r.json()
    assert await env.snapshot() == before


async def test_no_agent_with_docker_is_a_clear_409(env: Env) -> None:
    await fleet(env, "no-docker", docker=False)
    r = await env.http.post("/tests", json=spec(containers=1))
    assert r.status_code == 409
    assert "no online agent with a usable Docker engine" in r.json()["detail"]
    assert (await env.http.get("/tests")).json() == []


async def test_unknown_container_of_a_test_is_404(env: Env) -> None:
    await fleet(env, "gen-1")
    test = (await env.http.post("/tests", json=spec(containers=1))).json()
    before = await env.snapshot()
    r = await env.http.post(f"/tests/{test['id']}/containers/c-nope/stop")
    assert r.status_code == 404 and "c-nope" in r.json()["detail"]
    assert await env.snapshot() == before


# --- a launch sent again never starts a second test ----------------------------------------------


async def test_a_launch_sent_again_with_its_idempotency_key_answers_with_the_first_test(env: Env) -> None:
    await fleet(env, "gen-1", "gen-2")
    key = {"Idempotency-Key": "launch-7f3a9c21"}
    first = await env.http.post("/tests", json=spec(), headers=key)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    again = await env.http.post("/tests", json=spec(), headers=key)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    tests = (await env.http.get("/tests")).json()
    assert [t["id"] for t in tests] == [first.json()["id"]]
    audit = [e for e in (await env.http.get("/audit")).json() if e["action"] == "test.create"]
    assert len(audit) == 1, "the replay is not a second launch"

    # without a key, or with another one, the same body is another launch (as before)
    assert (
        await env.http.post("/tests", json=spec(), headers={"Idempotency-Key": "launch-other-01"})
    ).status_code == 201
    assert (await env.http.post("/tests", json=spec())).status_code == 201
    assert len((await env.http.get("/tests")).json()) == 3
    # a dry run ignores the key
    r = await env.http.post("/tests", json=spec(dry_run=True), headers=key)
    assert r.status_code == 200 and "items" in r.json()


async def test_a_reused_or_bad_idempotency_key_is_refused_and_changes_nothing(env: Env) -> None:
    await fleet(env, "gen-1", "gen-2")
    key = {"Idempotency-Key": "launch-0123456789"}
    assert (await env.http.post("/tests", json=spec(), headers=key)).status_code == 201
    before = await env.snapshot()
    r = await env.http.post("/tests", json=spec(name="another"), headers=key)
    assert r.status_code == 422 and "used for another launch" in r.json()["detail"]
    for bad in (b"short", b"x" * 129, b"has space", "caf\u00e9-0123456".encode()):
        r = await env.http.post("/tests", json=spec(name="another"), headers={b"Idempotency-Key": bad})
        assert r.status_code == 422, (bad, r.text)
    assert await env.snapshot() == before


async def test_a_refused_launch_leaves_its_key_free(env: Env) -> None:
    await fleet(env, "gen-1")
    key = {"Idempotency-Key": "launch-after-refusal"}
    r = await env.http.post("/tests", json=spec(containers=1000), headers=key)
    assert r.status_code == 409
    r = await env.http.post("/tests", json=spec(containers=1000), headers=key)
    assert r.status_code == 409, "refused again on its merits, not replayed"
    assert (await env.http.get("/tests")).json() == []


async def test_the_same_launch_twice_at_once_starts_one_test(env: Env) -> None:
    await fleet(env, "gen-1", "gen-2")
    key = {"Idempotency-Key": "launch-at-once-01"}
    answers = await asyncio.gather(*(env.http.post("/tests", json=spec(), headers=key) for _ in range(2)))
    codes = sorted(r.status_code for r in answers)
    assert codes in ([200, 201], [201, 409]), [r.text for r in answers]
    assert len((await env.http.get("/tests")).json()) == 1


async def test_the_client_sends_the_key(env: Env) -> None:
    await fleet(env, "gen-1", "gen-2")
    transport = env.http._transport  # the same in-process server
    async with Client("http://test", ADMIN, transport=transport) as client:
        launch = TestCreate.model_validate(spec())
        first = await client.create_test(launch, idempotency_key="client-key-0001")
        again = await client.create_test(launch, idempotency_key="client-key-0001")
        other = await client.create_test(launch)
    assert first.id == again.id != other.id
